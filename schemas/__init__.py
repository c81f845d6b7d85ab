"""Message contracts (pydantic) and tables (SQLModel), and the Alembic migrations of those tables.

The bottom layer: it imports nothing from finpulse (the migration environment receives its connection from
:func:`monitor.core.db.upgrade`), and every other package may import it.
"""

from schemas.news import News, NewsBase, NewsIn, NewsOut
from schemas.registry import LabelledNews, ModelVersion

__all__ = ["LabelledNews", "ModelVersion", "News", "NewsBase", "NewsIn", "NewsOut"]
