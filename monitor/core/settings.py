"""The one settings class of finpulse.

Every knob is read from the environment (prefix ``FINPULSE_``) or an optional ``.env`` file. Invalid values fail
at start-up with one line that names the variable and the fix (see :func:`load_settings`).
"""

from __future__ import annotations

import re
import typing
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from monitor.core.errors import ConfigError

ENV_PREFIX = "FINPULSE_"
# user:password@ in a URL, up to the last @ of the word: a password with an unencoded @ is hidden whole.
_URL_PASSWORD_RE = re.compile(r"(://[^:/@\s]*:)\S*@")
# ?password=..., &sslpassword=..., ?token=...: libpq and Apprise accept credentials as query parameters too.
_SECRET_PARAM_RE = re.compile(r"([?&;][\w.-]*(?:password|passwd|pwd|secret|token|key)=)[^&;\s'\"]*", re.IGNORECASE)


def mask_url(text: str) -> str:
    """``text`` with the password and any password-like query value of every URL in it replaced by ``***``."""
    return _SECRET_PARAM_RE.sub(r"\1***", _URL_PASSWORD_RE.sub(r"\1***@", text))


def safe_database_url(url: str) -> str:
    """The database URL to show in a message or a log line: password hidden, even in the query string."""
    from sqlalchemy.engine import make_url  # lazy: startup

    try:
        shown = make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL is masked as text
        shown = url
    return mask_url(shown)


def holds_secret(annotation: object) -> bool:
    """True when a field's type holds a SecretStr anywhere (``SecretStr | None``, ``list[SecretStr]``)."""
    return annotation is SecretStr or any(holds_secret(arg) for arg in typing.get_args(annotation))


class Settings(BaseSettings):
    """finpulse configuration. Field descriptions double as the README's configuration table."""

    # env_ignore_empty: `FINPULSE_X=` (an uncommented template line, an empty compose/Kubernetes value) means
    # "unset, use the default", not an empty path ('.') or an unparsable empty JSON list.
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", env_file_encoding="utf-8", extra="ignore", validate_default=True,
        env_ignore_empty=True,
    )

    # --- Kafka -------------------------------------------------------------------------------------------
    kafka_bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers, comma separated.")
    kafka_topic: str = Field("finpulse.news", min_length=1, description="Topic the news arrives on.")
    kafka_dead_letter_topic: str = Field(
        "finpulse.news.dlq", min_length=1, description="Topic that receives malformed messages with the reason."
    )
    kafka_group_id: str = Field("finpulse-monitor", min_length=1, description="Consumer group of `finpulse consume`.")
    kafka_partitions: int = Field(
        4, ge=1, le=1024,
        description="Partitions per topic that `finpulse broker` and docker/compose.yaml's kafka-init create.",
    )
    kafka_session_timeout_ms: int = Field(6_000, ge=1_000, description=(
        "Consumer group session timeout: how long a dead consumer holds its partitions. 6 s is the shortest that "
        "Apache Kafka accepts by default (group.min.session.timeout.ms); heartbeats go every session/6."))
    kafka_max_poll_interval_ms: int = Field(
        300_000, ge=5_000, description="Longest gap between polls before the group evicts the consumer."
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL."
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] | None = Field(
        None, description="SASL mechanism for real clusters."
    )
    kafka_sasl_username: str | None = Field(None, description="SASL user name.")
    kafka_sasl_password: SecretStr | None = Field(None, description="SASL password (never logged).")
    kafka_ssl_cafile: Path | None = Field(None, description="CA bundle for SSL.")
    kafka_ssl_certfile: Path | None = Field(None, description="Client certificate for SSL.")
    kafka_ssl_keyfile: Path | None = Field(None, description="Client key for SSL.")
    kafka_group_instance_id: str | None = Field(None, max_length=200, description=(
        "Static group membership (KIP-345): a stable, unique name per consumer (e.g. the container's host name) "
        "lets a restarted consumer take its partitions back at once instead of waiting out its old session."))
    broker_port: int = Field(9092, ge=1, le=65535, description="Port of the embedded broker (`finpulse broker`).")

    # --- Database ----------------------------------------------------------------------------------------
    database_url: str = Field(
        "sqlite:///./var/finpulse.db",
        description="SQLAlchemy URL: `sqlite:///path.db` or `postgresql+psycopg://user:pass@host/db`.",
    )

    # --- Model and scoring -------------------------------------------------------------------------------
    models_dir: Path = Field(Path("./var/models"), description="Where trained model versions are written.")
    model_dir: Path | None = Field(None, description="Model directory to serve; unset = the registry's champion.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto, cpu or cuda.")
    backend: Literal["auto", "torch", "onnx"] = Field(
        "auto", description="Scoring engine: torch, onnx (ONNX Runtime, the model's ONNX export) or auto = on a CPU "
        "the faster of the two, timed at load on this host; on CUDA, torch."
    )
    precision: Literal["auto", "bf16", "fp32", "int8"] = Field(
        "auto", description="auto = torch: bf16 on CUDA and on CPUs with AMX/AVX512-BF16, else fp32; onnx: int8 "
        "when the version's int8 export passed its quality gate, else fp32. bf16 is torch-only, int8 ONNX-only."
    )
    batch_max_messages: int = Field(64, ge=1, le=10_000, description="A micro-batch closes at this many messages...")
    batch_max_wait_ms: int = Field(250, ge=1, le=600_000, description="...or after this many milliseconds.")
    score_batch_size: int = Field(32, ge=1, le=4096, description="Texts per forward pass.")
    consumer_processes: int = Field(0, ge=0, le=256, description="Processes `finpulse consume` runs (one group "
                                    "member each); 0 = one per usable CPU core (one on a GPU host).")
    max_seq_length: int = Field(128, ge=8, le=512, description="Tokens per text given to the model.")
    body_max_chars: int = Field(2_000, ge=0, description="Body characters kept for the model (rest truncated).")
    max_message_bytes: int = Field(
        100_000, ge=256, description="Larger messages go to the dead-letter topic as oversized."
    )
    stats_interval_s: float = Field(10.0, gt=0, description=(
        "Seconds between throughput/lag log lines (and consumer heartbeats for the dashboard's lag tile)."))
    model_poll_interval_s: float = Field(30.0, gt=0, description="Seconds between checks for a new champion.")

    # --- Failure behaviour -------------------------------------------------------------------------------
    outage_deadline_s: float = Field(900.0, gt=0, description=(
        "How long the consumer rides out an unreachable database or broker (retrying with back-off, partitions "
        "paused) before it exits non-zero with one line for the orchestrator."))
    retry_max_backoff_s: float = Field(30.0, gt=0, description="Longest wait between two retries of an outage.")
    poison_max_crashes: int = Field(3, ge=1, le=100, description=(
        "Process crashes on the same message before it is dead-lettered as crash_loop."))
    health_dir: Path = Field(Path("./var/health"), description=(
        "Where each consumer writes its health state for `finpulse health` (readable while the database is down)."))

    # --- Signals and alerts ------------------------------------------------------------------------------
    signal_bucket_s: int = Field(300, ge=10, description="Width of a signal time bucket in seconds.")
    signal_baseline_days: float = Field(7.0, gt=0, description="Trailing baseline for z-scores and volume ratios.")
    signal_ewma_alpha: float = Field(0.3, gt=0, le=1, description="Weight of the newest bucket in the EWMA score.")
    dedup_window_s: int = Field(86_400, ge=0, description="Near-duplicate stories within this window count once.")
    alert_step_s: int = Field(60, ge=1, le=3600, description=(
        "Rules are evaluated at every multiple of this many seconds of event time, live and on a backlog alike."))
    alert_lateness_s: float = Field(30.0, ge=0, description=(
        "How far behind the stream's newest story evaluation stays, so stories arriving up to this late still "
        "count; later ones update the signals but not alerts already judged."))
    alert_eval_interval_s: float = Field(5.0, gt=0, description=(
        "How often a consumer evaluates the rules while no news arrives (resolves, reminders, no data)."))
    alert_catchup_days: float = Field(31.0, gt=0, description=(
        "On the first evaluation, how far back in event time to start (older stored news is not re-judged)."))
    alert_notify_max_age_s: float = Field(3600.0, ge=0, description=(
        "Alerts older than this in event time (a backlog being caught up) are recorded but not notified; 0 "
        "notifies all."))
    notify_urls: list[SecretStr] = Field(
        default_factory=list, description="Apprise URLs every alert goes to (JSON list). Secrets: env or file only."
    )
    notify_secrets_file: Path | None = Field(None, description="File of Apprise URLs, one per line.")
    notify_max_attempts: int = Field(5, ge=1, le=50, description="Delivery attempts per notification.")
    notify_backoff_s: float = Field(1.0, ge=0, description="First retry delay; doubles each attempt.")
    notify_lease_s: float = Field(120.0, gt=0, description=(
        "A sender's claim on a notification; renewed while a slow send runs, taken over after a sender died."))

    # --- Dashboard ---------------------------------------------------------------------------------------
    dashboard_port: int = Field(8501, ge=1, le=65535, description="Port of `finpulse dashboard`.")
    dashboard_password_hash: SecretStr | None = Field(
        None, description="bcrypt hash of the dashboard password (`finpulse dashboard hash-password`)."
    )
    dashboard_auth_disabled: bool = Field(False, description="Skip the password (local use only).")
    dashboard_refresh_s: float = Field(5.0, gt=0, description="Seconds between live refreshes.")
    dashboard_session_idle_s: float = Field(1800.0, gt=0, description=(
        "A dashboard login ends after this many seconds without activity."))
    dashboard_session_max_s: float = Field(43_200.0, gt=0, description=(
        "A dashboard login ends this many seconds after it began, active or not."))
    login_max_failures: int = Field(5, ge=1, le=100, description=(
        "Wrong passwords in a row (per account, and per client address) before logins are locked out."))
    login_lockout_s: float = Field(60.0, gt=0, description=(
        "The first lock-out; it doubles with each further failure, up to a day."))
    movers_min_stories: int = Field(3, ge=1, description=(
        "Stories an entity needs in its newest bucket to be listed as a top mover (one story is noise)."))

    # --- Retraining --------------------------------------------------------------------------------------
    retrain_promotion: Literal["auto", "approve"] = Field("auto", description=(
        "auto: a candidate that passes the gate is promoted at once; approve: it waits on the Models page until an "
        "admin other than the last labeller of its new data approves it (four eyes)."))
    retrain_cron: str = Field("0 2 * * *", description="Cron expression of the retraining job (UTC).")
    retrain_min_labels: int = Field(50, ge=1, description="Skip retraining below this many new labels.")
    retrain_tolerance: float = Field(0.01, ge=0, le=1, description="Allowed gold-set macro-F1 drop.")
    retrain_min_improvement: float = Field(0.0, ge=0, le=1, description="Required macro-F1 gain on new labels.")
    retrain_replay_samples: int = Field(500, ge=0, description="Earlier examples mixed in against forgetting.")
    retrain_peft: Literal["none", "lora"] = Field("none", description=(
        "Retraining trains every weight (none) or LoRA adapters + heads, merged at save (lora); README: LoRA."))
    drift_threshold: float = Field(0.1, ge=0, le=1, description="Jensen-Shannon divergence that raises drift.")
    retrain_gold_fraction: float = Field(
        0.2, gt=0, lt=1, description="Share of labels set aside once, by text hash, as the never-trained gold set."
    )
    retrain_config: Path | None = Field(
        None, description="YAML/JSON of `finpulse train` options for retraining (epochs, learning_rate, ...)."
    )
    retrain_misfire_grace_s: int = Field(
        3600, ge=1, description="A scheduled run missed by up to this many seconds (e.g. a restart) still runs once."
    )
    drift_cron: str = Field("15 * * * *", description="Cron expression of the drift check (UTC).")
    drift_window_h: float = Field(24.0, gt=0, description="Hours of recent news the drift check compares.")
    drift_min_news: int = Field(50, ge=1, description="Fewer scored stories than this: no drift verdict.")
    drift_retrain: bool = Field(False, description="Start a retraining when the drift check finds drift.")

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level.")

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        from sqlalchemy.engine import make_url  # lazy: startup

        if not value.startswith(("sqlite:", "postgresql")):
            raise ValueError("expected a sqlite:/// or postgresql+psycopg:// URL")
        try:
            host = make_url(value).host or ""
        except Exception:  # noqa: BLE001 - ArgumentError, or ValueError for a port that is not a number
            raise ValueError("not a valid SQLAlchemy URL") from None
        if "@" in host:  # else the driver's "cannot resolve host" error would show the password's end
            raise ValueError("the password holds an unencoded '@': percent-encode it as %40")
        if value.startswith("postgresql://") or value.startswith("postgres://"):
            # psycopg 3 is the driver we install; name it so SQLAlchemy does not look for psycopg2.
            value = "postgresql+psycopg://" + value.split("://", 1)[1]
        return value

    @field_validator("kafka_bootstrap")
    @classmethod
    def _host_port_list(cls, value: str) -> str:
        for server in value.split(","):
            host, _, port = server.strip().rpartition(":")
            if not host or not port.isdigit():
                raise ValueError("expected host:port[,host:port...]")
        return value

    @model_validator(mode="after")
    def _sasl_complete(self) -> Settings:
        if self.kafka_security_protocol.startswith("SASL") and self.kafka_sasl_mechanism is None:
            raise ValueError("KAFKA_SASL_MECHANISM must be set when KAFKA_SECURITY_PROTOCOL uses SASL")
        return self

    @property
    def kafka_topics(self) -> list[str]:
        return [self.kafka_topic, self.kafka_dead_letter_topic]

    def kafka_client_config(self) -> dict[str, object]:
        """Connection options shared by every kafka-python client (producer, consumer, admin)."""
        config: dict[str, object] = {
            "bootstrap_servers": [s.strip() for s in self.kafka_bootstrap.split(",")],
            "security_protocol": self.kafka_security_protocol,
        }
        if self.kafka_sasl_mechanism:
            config["sasl_mechanism"] = self.kafka_sasl_mechanism
            config["sasl_plain_username"] = self.kafka_sasl_username
            if self.kafka_sasl_password is not None:
                config["sasl_plain_password"] = self.kafka_sasl_password.get_secret_value()
        for key in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            path = getattr(self, f"kafka_{key}")
            if path is not None:
                config[key] = str(path)
        return config


def _shown_input(field: str, found: object) -> str:
    """What an error may quote of a bad value: never a secret's; of the database URL only its scheme (a URL
    too broken to parse cannot be masked reliably); in any other, a URL's password masked (a DSN pasted astray)."""
    secret = field in Settings.model_fields and holds_secret(Settings.model_fields[field].annotation)
    if field == "" or secret or isinstance(found, dict):
        return ""
    text = str(found)
    if field == "database_url":
        scheme = text.split("://", 1)[0] if "://" in text else ""
        return f" (found a {scheme!r} URL)" if re.fullmatch(r"[A-Za-z][\w+.-]{0,30}", scheme) else ""
    return f" (found {mask_url(text)[:80]!r})"


def describe_validation_error(error: ValidationError) -> str:
    """One line: the variable, what was expected, what was found, and the fix."""
    first = error.errors()[0]
    loc = [str(part) for part in first.get("loc", ())]
    field = loc[0] if loc else ""
    variable = f"{ENV_PREFIX}{field.upper()}" if field else "settings"
    found_text = _shown_input(field, first.get("input"))
    message = first.get("msg", "invalid").removeprefix("Value error, ")
    return f"invalid setting {variable}: {message}{found_text}; fix the environment variable or .env entry"


def load_settings(**overrides: object) -> Settings:
    """Build settings, turning a validation error into a :class:`ConfigError` with one readable line."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        raise ConfigError(describe_validation_error(error)) from None
    except SettingsError as error:
        # Raised before validation when a list/dict setting is not valid JSON.
        field = str(error).split('"')[1] if '"' in str(error) else ""
        variable = f"{ENV_PREFIX}{field.upper()}" if field else "a FINPULSE_ setting"
        raise ConfigError(f"invalid setting {variable}: expected a JSON list such as '[\"json://host/path\"]'; "
                          "fix the environment variable or .env entry") from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
