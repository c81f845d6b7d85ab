"""The running product: the stream, its signals and alerts, the model lifecycle, the CLI and its tools.

Rooms, from the bottom up (each may import only the rooms below it and ``finetune`` and ``schemas``; checked by
import-linter, see ``[tool.importlinter]`` in pyproject.toml):

``core`` < ``scoring`` < ``signals`` < ``alerts`` < ``stream`` < ``lifecycle`` < ``cli`` < ``bench``, ``demo`` <
``app`` (the CLI's composition root). ``finetune`` sits between ``core`` and ``scoring``.
"""
