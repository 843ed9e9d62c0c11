"""Configuration in one place: every setting is a field here, read from ``PEROVDB_*`` env vars."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_EMBEDDED_DIR = Path(".perovdb")
#: figures and reports of the main job and of ``perovdb evaluate`` (kept out of the embedded store's folder,
#: which ``perovdb demo --fresh`` removes)
OUTPUT_DIR = Path("perovdb-output")
ACCURACY_OUTPUT_DIR = OUTPUT_DIR / "accuracy"
ACCURACY_GRAPH_CACHE = OUTPUT_DIR / "accuracy-graphs"


class Settings(BaseSettings):
    """perovdb settings. Each field can be set by the env var ``PEROVDB_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="PEROVDB_", extra="ignore")

    uri: str = Field(
        default=f"monty://{DEFAULT_EMBEDDED_DIR}",
        description="Database URI: mongodb://…, mongodb+srv://…, monty:///path (embedded, on disk) or memory://.",
    )
    database: str = Field(default="perovdb", description="Database name on a MongoDB server.")
    ingest_batch_size: int = Field(default=500, ge=1, description="Documents written per batch during ingest.")
    generation_seed: int = Field(
        default=0, description="Seed that places alloy species on sites of generated supercells."
    )
    device: str = Field(default="auto", description="torch device for ML: auto (CUDA when present), cpu, cuda.")
    retain_heap: bool = Field(
        default=True,
        description="While training or predicting, keep freed memory in the heap for reuse (glibc mallopt) instead "
        "of page-faulting each large per-edge tensor again; restored afterwards.",
    )
    bulk_gc_threshold: int = Field(
        default=50_000,
        ge=0,
        description="During ingest and builder runs, Python's cyclic garbage collector runs after this many net "
        "allocations instead of 700 (fewer passes over the whole heap; restored afterwards). 0 leaves it alone.",
    )
    num_workers: int = Field(default=0, ge=0, description="Worker processes for graph building and ingest parsing (0 = all cores).")
    api_key: str | None = Field(default=None, description="Key that unlocks write endpoints of the HTTP API.", repr=False)
    api_max_limit: int = Field(default=1000, ge=1, description="Largest page size of the HTTP API (larger is refused with 400).")
    api_default_limit: int = Field(default=100, ge=1, description="Page size of the HTTP API when none is asked for.")
    api_max_body_bytes: int = Field(default=5 * 1024 * 1024, ge=1, description="Largest request body (413 above).")
    build_lookback_seconds: float = Field(
        default=10.0,
        ge=0,
        description="Builders re-examine documents stamped up to this long (s) before their previous run started: "
        "covers a write stamped before it was committed and writers whose clocks lag the builder's.",
    )
    api_max_time_ms: int = Field(default=10_000, ge=1, description="Server-side time limit of API queries (MongoDB only).")


def get_settings(**overrides: object) -> Settings:
    """Return settings from the environment, with explicit overrides applied."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})
