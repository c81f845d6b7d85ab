"""The ``finpulse`` commands, one module per command group; :mod:`monitor.app` assembles them.

May import: ``monitor.lifecycle`` and everything below it. Command modules import the code they run inside the
commands (marked ``# lazy: startup`` or ``# lazy: torch``), so that ``finpulse --help`` starts in a tenth of a
second.
"""
