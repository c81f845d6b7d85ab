"""The naive baseline of ``finpulse bench``, written the way tutorials write a Kafka + transformers consumer.

A plain kafka-python ``for message in consumer`` loop (auto-commit), one ``pipeline("text-classification")`` call
per message, one ``session.add(row); session.commit()`` per message, no signals and no alerts. It runs the SAME
weights as the real consumer: for a finpulse multi-task directory, :class:`SentimentView` presents the encoder and
the document-sentiment head (masked mean pooling -> linear, exactly what the scorer uses) as a sequence
classifier, because exporting to ``AutoModelForSequenceClassification`` would swap the mean pooling for BERT's CLS
pooler and so change the model. The view still runs the (cheap) NER head; entity scoring is skipped, which
favours the baseline. Precision is fp32 (the pipeline default). Threads are torch's default (all cores), as in
the tutorials; a second variant uses the consumer's thread count, which separates the thread setting from the rest
of the serving design.

``python -m monitor.bench.naive JOB.json`` (worker process): ``{"variants": [{"settings": {...}, "max_messages": N,
"threads": "torch-default" | "consumer"}, ...], "out": PATH}``; one result per variant, the model loaded once.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoTokenizer, PretrainedConfig, PreTrainedModel, pipeline
from transformers.modeling_outputs import SequenceClassifierOutput

from finetune.device import configure_threads
from finetune.model import MultitaskModel
from finetune.model_dir import read_manifest
from monitor.bench.probe import peak_rss_kib, worker_main
from monitor.core import db
from monitor.core.settings import Settings, load_settings
from monitor.stream.records import record_time
from schemas.news import News, NewsIn
from schemas.prediction import SENTIMENT_LABELS
from schemas.types import utcnow

log = logging.getLogger(__name__)


class SentimentView(PreTrainedModel):  # type: ignore[no-untyped-call]
    """A finpulse multi-task model seen as a sequence classifier (its document-sentiment logits)."""

    base_model_prefix = "multitask"

    def __init__(self, config: PretrainedConfig, multitask: torch.nn.Module) -> None:
        super().__init__(config)
        self.multitask = multitask

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, **_: Any) -> SequenceClassifierOutput:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        # The pipeline hands over ids only, and the tokenizer lowercases, so a casing model sees class NONE: the
        # same work per token (the baseline is timed, its labels are not scored).
        casing = torch.zeros_like(input_ids) if getattr(self.multitask, "reads_casing", False) else None
        outputs = self.multitask(input_ids, attention_mask, token_type_ids=token_type_ids, casing_ids=casing)
        return SequenceClassifierOutput(logits=outputs.sentiment)


def classifier(model_dir: Path, device: str) -> Any:
    """``pipeline("text-classification")`` over ``model_dir`` (a multi-task dir through :class:`SentimentView`)."""
    tokenizer = AutoTokenizer.from_pretrained(  # nosec B615 # a local model folder; never the Hub
        model_dir, trust_remote_code=False, local_files_only=True)
    torch_device = "cuda" if device in ("auto", "cuda") and torch.cuda.is_available() else "cpu"
    if read_manifest(model_dir).get("kind") != "multitask":
        return pipeline("text-classification", model=str(model_dir), tokenizer=tokenizer, top_k=None,
                        device=torch_device, model_kwargs={"use_safetensors": True})

    config = AutoConfig.from_pretrained(  # nosec B615 # a local model folder; never the Hub
        model_dir, trust_remote_code=False, local_files_only=True)
    config.id2label = dict(enumerate(SENTIMENT_LABELS))
    config.label2id = {label: i for i, label in enumerate(SENTIMENT_LABELS)}
    view = SentimentView(config, MultitaskModel.load(model_dir, torch_device))
    view.eval()  # type: ignore[no-untyped-call]
    quiet = logging.getLogger("transformers.pipelines.base")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)  # "SentimentView is not supported for text-classification": it is, by duck type
    try:
        return pipeline("text-classification", model=view, tokenizer=tokenizer, top_k=None, device=torch_device)
    finally:
        quiet.setLevel(level)


def drain_topic(clf: Any, settings: Settings, limit: int) -> dict[str, Any]:
    """The tutorial loop over one topic until ``limit`` messages are stored."""
    from kafka import KafkaConsumer
    from sqlmodel import Session

    started = time.monotonic()
    engine = db.make_engine(settings.database_url)
    consumer = KafkaConsumer(settings.kafka_topic, **settings.kafka_client_config(),
                             group_id=settings.kafka_group_id, auto_offset_reset="earliest",
                             session_timeout_ms=settings.kafka_session_timeout_ms)
    commits: list[tuple[str, float]] = []
    try:
        for message in consumer:
            news = NewsIn.model_validate_json(message.value)
            output = clf(news.model_text(settings.body_max_chars), truncation=True,
                         max_length=settings.max_seq_length)
            output = output[0] if output and isinstance(output[0], list) else output  # one text: [[...]]
            scores = {d["label"]: float(d["score"]) for d in output}
            probs = [scores[label] for label in SENTIMENT_LABELS]
            best = max(range(3), key=lambda i: probs[i])
            with Session(engine) as session:
                session.add(News(
                    **news.model_dump(), kafka_topic=message.topic, kafka_partition=message.partition,
                    kafka_offset=message.offset, ingested_at=record_time(message), scored_at=utcnow(),
                    model_version="naive", p_negative=probs[0], p_neutral=probs[1], p_positive=probs[2],
                    score=probs[2] - probs[0], confidence=probs[best], sentiment=SENTIMENT_LABELS[best], entities=[]))
                session.commit()
            commits.append((news.id, time.time()))
            if len(commits) >= limit:
                break
    finally:
        consumer.close()
        engine.dispose()
    return {"messages": len(commits), "inserted": len(commits), "load_s": 0.0,
            "run_s": round(time.monotonic() - started, 2), "commits": commits,
            "batches": [(t, 1) for _, t in commits], "rss_samples": [], "peak_rss_kib": peak_rss_kib(),
            "torch_threads": torch.get_num_threads()}


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Each variant drains its own topic with the same pipeline; only the torch thread count differs."""
    default_threads = torch.get_num_threads()  # before anything sets it: what a tutorial runs with
    variants = [(load_settings(**v["settings"]), int(v["max_messages"]), v.get("threads")) for v in job["variants"]]
    started = time.monotonic()
    first = variants[0][0]
    clf = classifier(Path(str(first.model_dir)), first.device)
    load_s = round(time.monotonic() - started, 2)
    results = []
    for settings, limit, threads in variants:
        if threads == "consumer":
            configure_threads()
        else:
            torch.set_num_threads(default_threads)
        results.append({**drain_topic(clf, settings, limit), "load_s": load_s})
    return {"variants": results}


if __name__ == "__main__":
    sys.exit(worker_main(run_job, sys.argv[1:]))
