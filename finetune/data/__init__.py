"""Training and evaluation data: one module per kind of source (``conll``, ``entities`` for finpulse JSON lines and
SEntFiN, ``labelled`` for the ``labelled_news`` table), the ``--data KIND=PATH`` syntax (``sources``), shared row
readers, deterministic splits, and the bundled sample corpus. A new data loader goes here and is named in
:mod:`finetune.data.sources`.

May import: ``finetune.examples``, ``monitor.core``, ``schemas``.
"""
