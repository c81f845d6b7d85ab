"""Labelling: the least confident recent stories first; confirm or correct sentiment and entities.

Keyboard: 1 / 2 / 3 save the label as negative / neutral / positive (the model's guess is the highlighted
button, so confirming is one key), S skips. Entity rows are edited in the grid (arrows, Enter, Delete).
"""

from __future__ import annotations

import logging

import pandas as pd
import streamlit as st

from dashboards import actions, auth, labels, state
from dashboards.formatting import escape_markdown, highlight, utc
from dashboards.queries import training as training_queries
from dashboards.state import load, settings
from monitor.core.errors import FinpulseError
from schemas.prediction import SENTIMENT_LABELS
from schemas.signals import ENTITY_TYPES

log = logging.getLogger(__name__)

QUEUE_DAYS = 7.0
SKIP_KEY = "labelling_skipped"
MAX_SKIPPED = 200  # the session remembers this many skipped stories, no more (memory stays flat)
NOTICE_KEY = "labelling_notice"


def counters() -> None:
    awaiting = load(training_queries.labels_awaiting)
    size = load(training_queries.queue_size, QUEUE_DAYS)
    left, right = st.columns(2)
    since = (f"newer than label #{awaiting.trained_until_label_id}, the last one champion {awaiting.champion} "
             "trained on" if awaiting.trained_until_label_id is not None else "no champion has trained on labels yet")
    left.metric("Labels awaiting the next retraining", awaiting.count, border=True, help=since)
    right.metric(f"Unlabelled stories (last {QUEUE_DAYS:g} days)", size, border=True)


def _skip(news_id: str) -> None:
    skipped: list[str] = st.session_state.setdefault(SKIP_KEY, [])
    skipped.append(news_id)
    del skipped[:-MAX_SKIPPED]


def label_form(item: training_queries.QueueItem) -> None:
    st.markdown(f"#### {highlight(item.text, item.entities)}")
    probs = " · ".join(f"{label} {p:.2f}" for label, p in zip(SENTIMENT_LABELS, item.probs, strict=True))
    st.caption(f"Model {escape_markdown(item.model_version)} says **{item.sentiment}** (confidence "
               f"{item.confidence:.2f}: {probs}) · {escape_markdown(item.source)} · {utc(item.published_at)}")
    with st.form(f"label_{item.news_id}", border=True):
        edited = st.data_editor(
            pd.DataFrame(labels.editor_rows(item), columns=labels.EDITOR_COLUMNS),
            key=f"entities_{item.news_id}", num_rows="dynamic", hide_index=True, width="stretch",
            column_config={
                "text": st.column_config.TextColumn("Entity text", required=True,
                                                    help="Exactly as it appears in the text."),
                "type": st.column_config.SelectboxColumn("Type", options=list(ENTITY_TYPES), required=True,
                                                         default="ORG"),
                "sentiment": st.column_config.SelectboxColumn("Entity sentiment", options=list(SENTIMENT_LABELS)),
                "start": st.column_config.NumberColumn("Start", min_value=0, step=1,
                                                       help="Character offset; leave empty to find the text."),
                "end": st.column_config.NumberColumn("End", min_value=0, step=1),
            },
        )
        st.caption("Document sentiment — press 1, 2 or 3 to save; S skips.")
        cols = st.columns(4)
        pressed = None
        for col, (index, label) in zip(cols, enumerate(SENTIMENT_LABELS, start=1), strict=False):
            if col.form_submit_button(f"{label.capitalize()}", shortcut=str(index), width="stretch",
                                      type="primary" if label == item.sentiment else "secondary"):
                pressed = label
        skipped = cols[3].form_submit_button("Skip", shortcut="S", width="stretch")
    if skipped:
        _skip(item.news_id)
        st.rerun()
    if pressed is not None:
        try:
            entities = labels.build_entities(item.text, edited.to_dict("records"))
            label_id = actions.label(item, pressed, entities)
        except FinpulseError as error:  # a bad entity row (DataError) or role (PermissionDenied)
            st.error(str(error))
            return
        state.invalidate()
        st.session_state[NOTICE_KEY] = f"Saved label #{label_id}: {pressed}, {len(entities)} entities."
        st.rerun()


def render() -> None:
    current = settings()
    st.title("Labelling")
    notice = st.session_state.pop(NOTICE_KEY, None)
    if notice:
        st.success(notice)
    counters()
    refused = auth.why_not("label")
    if refused is not None:
        st.caption(refused)
        return
    signed_in = auth.principal()
    if signed_in is not None:
        st.caption(f"Labels are saved as **{escape_markdown(signed_in.name)}** ({signed_in.role}).")
    skipped = tuple(st.session_state.get(SKIP_KEY, []))
    queue = load(training_queries.labelling_queue, QUEUE_DAYS, 1, current.body_max_chars, skipped)
    if not queue:
        st.success("Nothing to label: every recent story is labelled" + (" or skipped." if skipped else "."))
        if skipped and st.button("Show skipped stories again"):
            st.session_state[SKIP_KEY] = []
            st.rerun()
        return
    label_form(queue[0])


render()
