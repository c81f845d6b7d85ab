"""A deterministic tiny sentiment model and a webhook receiver for the alert tests.

The model is a real 1-layer BERT sequence classifier (safetensors, loaded by the real scorer) whose weights are
set by hand rather than trained: the word "plunge" makes a text negative, "surge" positive, anything else
neutral. How: only those two tokens have non-zero embeddings; attention has zero queries and keys, so [CLS]
attends uniformly to every token and receives their mean; identity value/output/pooler weights carry it through;
the classifier reads dimension 0 as negative and dimension 1 as positive, with a neutral bias.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

import torch
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

from finetune.base_model import default_base_model_dir
from monitor.stream.consumer import NewsConsumer
from monitor.stream.stats import RunSummary
from tests.stream_helpers import encode

NEGATIVE_WORD, POSITIVE_WORD = "plunge", "surge"


def make_keyword_classifier(path: Path, version: str = "keywords-0") -> Path:
    tokenizer = AutoTokenizer.from_pretrained(default_base_model_dir())
    negative_id, positive_id = tokenizer.convert_tokens_to_ids([NEGATIVE_WORD, POSITIVE_WORD])
    hidden = 16
    config = BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=hidden, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=16, max_position_embeddings=512, num_labels=3, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0, id2label={0: "negative", 1: "neutral", 2: "positive"},
        label2id={"negative": 0, "neutral": 1, "positive": 2},
    )
    model = BertForSequenceClassification(config)
    eye = torch.eye(hidden)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        for norm in (model.bert.embeddings.LayerNorm, model.bert.encoder.layer[0].attention.output.LayerNorm,
                     model.bert.encoder.layer[0].output.LayerNorm):
            norm.weight.fill_(1.0)
        model.bert.embeddings.word_embeddings.weight[negative_id, 0] = 1.0
        model.bert.embeddings.word_embeddings.weight[positive_id, 1] = 1.0
        attention = model.bert.encoder.layer[0].attention
        attention.self.value.weight.copy_(eye)
        attention.output.dense.weight.copy_(eye)
        model.bert.pooler.dense.weight.copy_(eye)
        model.classifier.weight[0, 0] = 8.0  # negative <- dimension 0
        model.classifier.weight[2, 1] = 8.0  # positive <- dimension 1
        model.classifier.bias[1] = 3.0  # neutral when neither word is there
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    (path / "finpulse_model.json").write_text(json.dumps({"kind": "sequence-classification", "version": version}))
    return path


class WebhookReceiver:
    """An HTTP server on 127.0.0.1 that records JSON posts; paths containing 'fail' answer 500. With ``delay_s``,
    each POST is answered only after that long (a slow endpoint), and concurrent posts and durations are counted."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.arrivals: list[datetime] = []  # when each of ``received`` arrived (wall clock)
        self.failed_posts = 0
        self.durations: list[float] = []
        self.in_flight = self.most_in_flight = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # http.server's naming
                started = time.monotonic()
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    receiver.in_flight += 1
                    receiver.most_in_flight = max(receiver.most_in_flight, receiver.in_flight)
                time.sleep(delay_s)
                with receiver.lock:
                    receiver.in_flight -= 1
                    if "fail" in self.path:
                        receiver.failed_posts += 1
                    else:
                        receiver.received.append((self.path, json.loads(body)))
                        receiver.arrivals.append(datetime.now(UTC))
                        receiver.durations.append(time.monotonic() - started)
                self.send_response(500 if "fail" in self.path else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"json://127.0.0.1:{self.port}/{path}"

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    def posts(self) -> list[tuple[str, dict[str, Any]]]:
        with self.lock:
            return list(self.received)

    def timed_posts(self) -> list[tuple[datetime, str, dict[str, Any]]]:
        """(arrival, path, payload) of each successful post, in arrival order."""
        with self.lock:
            return [(at, path, payload) for at, (path, payload) in zip(self.arrivals, self.received, strict=True)]


def news_message(news_id: str, headline: str, ticker: str, published: datetime) -> tuple[bytes | None, bytes]:
    """A (key, value) for the news topic: one story about ``ticker``."""
    return ticker.encode(), encode({"id": news_id, "source": "wire", "published_at": published.isoformat(),
                                    "headline": headline, "tickers": [ticker]})


class ConsumerThread:
    """A long-running :class:`NewsConsumer` (as ``finpulse consume`` runs it) on a thread, stopped when the block
    ends; ``summary`` is its run's summary (re-raising what ended the run, if it failed)."""

    def __init__(self, consumer: NewsConsumer) -> None:
        self.consumer = consumer
        self.summaries: list[RunSummary] = []
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, name="test-consumer", daemon=True)

    def _run(self) -> None:
        try:
            self.summaries.append(self.consumer.run())
        except BaseException as error:  # noqa: BLE001 - re-raised by summary
            self.errors.append(error)

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.consumer.stop()
        self.thread.join(60)

    def wait_for(self, condition: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
        """Wait for ``condition``; fail at once, with its error, if the consumer's run ended meanwhile."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if condition():
                return
            if not self.thread.is_alive():
                raise AssertionError(f"the consumer stopped while waiting for {what}") from (
                    self.errors[0] if self.errors else None)
            time.sleep(0.05)
        raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")

    @property
    def summary(self) -> RunSummary:
        if self.errors:
            raise self.errors[0]
        assert self.summaries, "the consumer is still running"
        return self.summaries[0]
