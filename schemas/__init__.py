"""Message contracts (pydantic) and tables (SQLModel)."""

from schemas.news import News, NewsBase, NewsIn, NewsOut
from schemas.registry import LabelledNews, ModelVersion

__all__ = ["LabelledNews", "ModelVersion", "News", "NewsBase", "NewsIn", "NewsOut"]
