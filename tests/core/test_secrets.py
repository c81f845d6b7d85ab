"""Secrets are never echoed: the real CLI, in subprocesses, with seeded credentials in every setting that can hold
one (database URL, SASL password, notification URLs, dashboard password hash, ``FINPULSE_NOTIFY_<NAME>``, the
notify secrets file), good values and bad ones; every byte of stdout and stderr is searched for each secret.

All secrets contain ``s3cr3t``, so any fragment of one that leaks (a password's end, a token) is caught too.
The commands run in parallel (each under a 60 s timeout); the broker and PostgreSQL addresses are unreachable
(port 1) so that every connection fails fast, and logging is at DEBUG so that a leaking log line would show.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from monitor.core import db

REPO = Path(__file__).resolve().parents[2]
MARK = "s3cr3t"
DB_PW = "s3cr3t-DB-pw-4417"
SASL_PW = "s3cr3t-SASL-pw-5521"
NOTIFY_TOKEN = "s3cr3t-NOTIFY-tok-6633"
CHANNEL_TOKEN = "s3cr3t-CHAN-tok-7788"
FILE_TOKEN = "s3cr3t-FILE-tok-8899"
PW_HASH = "$2b$12$s3cr3tHASHs3cr3tHASHs3cr3tHASHs3cr3tHASHs3cr3tHASHs3cr3t"
SECRETS = (DB_PW, SASL_PW, NOTIFY_TOKEN, CHANNEL_TOKEN, FILE_TOKEN, PW_HASH, PW_HASH[7:], MARK)
PG_URL = f"postgresql+psycopg://finpulse:{DB_PW}@127.0.0.1:1/finpulse"

# Invalid settings fail in the one loader every command shares: two commands suffice there. Valid ones reach the
# database and the broker, each command its own way.
INVALID = (("config", "show"), ("health",))
PG = (*INVALID, ("db", "upgrade"))
FULL = (*PG, ("db", "current"), ("alerts", "list"), ("models", "list"), ("users", "list"), ("audit", "export"))
# Each scenario: the settings changed from the seeded base (None unsets one), and the commands to run. The replay
# (SASL credentials, no broker) takes kafka-python's 30 s bootstrap timeout: it is listed first, to start first.
SCENARIOS: dict[str, tuple[dict[str, str | None], tuple[tuple[str, ...], ...]]] = {
    "sqlite-ok": ({}, (("replay", "NEWS"), *FULL, ("config", "env-example"), ("alerts", "history"),
                       ("alerts", "add", "leak-check", "--entity", "AAPL", "--metric", "mean_sentiment", "--op",
                        "lt", "--threshold", "-0.4", "--channel", "ops", "--channel", "nowhere"))),
    "pg-unreachable": ({"DATABASE_URL": PG_URL}, FULL),
    "pg-query-password": ({"DATABASE_URL": f"postgresql://finpulse@127.0.0.1:1/finpulse?password={DB_PW}"}, PG),
    "pg-encoded-password": ({"DATABASE_URL": PG_URL.replace(DB_PW, f"{DB_PW}%40%25x")}, PG),
    "db-bad-scheme": ({"DATABASE_URL": f"mysql://finpulse:{DB_PW}@db.internal/finpulse"}, INVALID),
    "db-no-scheme": ({"DATABASE_URL": f"finpulse:{DB_PW}@db.internal/finpulse"}, INVALID),
    "db-unencoded-at": ({"DATABASE_URL": f"postgresql://finpulse:{DB_PW}@x@127.0.0.1:1/finpulse"}, INVALID),
    "db-bad-port": ({"DATABASE_URL": f"postgresql://finpulse:{DB_PW}@127.0.0.1:port/finpulse"}, INVALID),
    "notify-bad-json": ({"DATABASE_URL": PG_URL, "NOTIFY_URLS": f'["json://hooks.invalid/{NOTIFY_TOKEN}"'}, INVALID),
    "notify-not-a-list": ({"NOTIFY_URLS": f'{{"url": "json://hooks.invalid/{NOTIFY_TOKEN}"}}'}, INVALID),
    "notify-bad-item": ({"NOTIFY_URLS": f'["json://hooks.invalid/{NOTIFY_TOKEN}", 7]'}, INVALID),
    "sasl-no-mechanism": ({"KAFKA_SASL_MECHANISM": None}, INVALID),
    "other-malformed": ({"DATABASE_URL": PG_URL, "KAFKA_PARTITIONS": "many"}, INVALID),
}
# What each failing scenario must say, so that the test cannot pass by failing somewhere else.
EXPECTED = {
    "sqlite-ok": "FINPULSE_KAFKA_SASL_PASSWORD='**********'",
    "pg-unreachable": "finpulse:***@127.0.0.1:1/finpulse is unreachable",
    "pg-query-password": "unreachable",
    "pg-encoded-password": "unreachable",
    "db-bad-scheme": "invalid setting FINPULSE_DATABASE_URL",
    "db-no-scheme": "invalid setting FINPULSE_DATABASE_URL",
    "db-unencoded-at": "invalid setting FINPULSE_DATABASE_URL",
    "db-bad-port": "invalid setting FINPULSE_DATABASE_URL",
    "notify-bad-json": "invalid setting FINPULSE_NOTIFY_URLS",
    "notify-not-a-list": "invalid setting FINPULSE_NOTIFY_URLS",
    "notify-bad-item": "invalid setting FINPULSE_NOTIFY_URLS",
    "sasl-no-mechanism": "invalid setting settings: KAFKA_SASL_MECHANISM must be set",
    "other-malformed": "invalid setting FINPULSE_KAFKA_PARTITIONS",
}


def base_env(tmp: Path) -> dict[str, str]:
    """This process's environment without its FINPULSE_ settings, plus a secret in every setting that holds one."""
    secrets_file = tmp / "notify-secrets"
    secrets_file.write_text(f"ops=json://bot:{FILE_TOKEN}@hooks.invalid/ops\njson://hooks.invalid/{FILE_TOKEN}\n",
                            encoding="utf-8")
    env = {key: value for key, value in os.environ.items() if not key.startswith("FINPULSE_")}
    env.update({
        "FINPULSE_DATABASE_URL": f"sqlite:///{tmp / 'ok.db'}",
        "FINPULSE_KAFKA_BOOTSTRAP": "127.0.0.1:1",
        "FINPULSE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "FINPULSE_KAFKA_SASL_MECHANISM": "PLAIN",
        "FINPULSE_KAFKA_SASL_USERNAME": "finpulse",
        "FINPULSE_KAFKA_SASL_PASSWORD": SASL_PW,
        "FINPULSE_NOTIFY_URLS": f'["json://hooks.invalid/{NOTIFY_TOKEN}", "json://hooks.invalid/a?token={NOTIFY_TOKEN}"]',
        "FINPULSE_NOTIFY_OPS": f"json://hooks.invalid/{CHANNEL_TOKEN},json://bot:{CHANNEL_TOKEN}@hooks.invalid/",
        "FINPULSE_NOTIFY_SECRETS_FILE": str(secrets_file),
        "FINPULSE_DASHBOARD_PASSWORD_HASH": PW_HASH,
        "FINPULSE_HEALTH_DIR": str(tmp / "health"),
        "FINPULSE_MODELS_DIR": str(tmp / "models"),
        "FINPULSE_LOG_LEVEL": "DEBUG",
        "LOGNAME": "secrets-test",
    })
    return env


def run(env: dict[str, str], args: tuple[str, ...]) -> tuple[int, str]:
    command = [sys.executable, "-m", "monitor.app", "--log-level", "DEBUG", *args]
    try:
        done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as error:
        out = [part.decode() if isinstance(part, bytes) else part or "" for part in (error.stdout, error.stderr)]
        return -1, "".join(out) + "\n(timed out)"
    return done.returncode, done.stdout + done.stderr


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[tuple[str, tuple[str, ...]], tuple[int, str]]]:
    tmp = tmp_path_factory.mktemp("secrets")
    base = base_env(tmp)
    db.upgrade(base["FINPULSE_DATABASE_URL"])  # the good scenario's commands then find a migrated database
    db.dispose_engines()
    news = tmp / "news.jsonl"
    news.write_text('{"id": "n1", "headline": "Apple beats", "published_at": "2024-01-02T03:04:05Z", '
                    '"tickers": ["AAPL"]}\n', encoding="utf-8")
    jobs: dict[tuple[str, tuple[str, ...]], tuple[dict[str, str], tuple[str, ...]]] = {}
    for name, (changes, commands) in SCENARIOS.items():
        env = dict(base)
        for key, value in changes.items():
            env.pop(f"FINPULSE_{key}", None)
            if value is not None:
                env[f"FINPULSE_{key}"] = value
        for args in commands:
            jobs[name, args] = (env, tuple(str(news) if arg == "NEWS" else arg for arg in args))
    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = {key: pool.submit(run, env, args) for key, (env, args) in jobs.items()}
        yield {key: future.result() for key, future in futures.items()}


@pytest.mark.slow
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_no_command_echoes_a_secret(outputs: dict[tuple[str, tuple[str, ...]], tuple[int, str]],
                                    scenario: str) -> None:
    results = {args: result for (name, args), result in outputs.items() if name == scenario}
    for args, (code, text) in results.items():
        assert code != -1, f"`finpulse {' '.join(args)}` timed out:\n{text}"
        leaked = [secret for secret in SECRETS if secret.lower() in text.lower()]
        assert not leaked, f"`finpulse {' '.join(args)}` ({scenario}) echoed {leaked}:\n{text}"
    assert any(EXPECTED[scenario] in text for _, text in results.values()), results


@pytest.mark.slow
def test_the_good_settings_work_and_are_shown_masked(
        outputs: dict[tuple[str, tuple[str, ...]], tuple[int, str]]) -> None:
    code, shown = outputs["sqlite-ok", ("config", "show")]
    assert code == 0, shown
    for line in ("FINPULSE_KAFKA_SASL_PASSWORD='**********'", "FINPULSE_NOTIFY_URLS='**********'",
                 "FINPULSE_DASHBOARD_PASSWORD_HASH='**********'"):
        assert line in shown.splitlines()
    assert outputs["sqlite-ok", ("alerts", "list")][0] == 0
    code, text = outputs["pg-unreachable", ("config", "show")]
    assert code == 0 and f"FINPULSE_DATABASE_URL={PG_URL.replace(DB_PW, '***')}" in text.splitlines(), text
    code, text = outputs["pg-query-password", ("config", "show")]
    assert code == 0 and "password=***" in text, text
    code, text = outputs["pg-unreachable", ("health",)]
    assert code == 1 and "no Kafka bootstrap server reachable" in text and "finpulse:***@127.0.0.1:1" in text, text
