"""Every SQL table of faceledger (SQLAlchemy Core), in one place; migrations live in
``migrations/``. The ledger's tables are here too: one schema, one set of migrations."""

from __future__ import annotations

from pgvector.sqlalchemy import HALFVEC
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

collections = Table(
    "collections",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("model_pack", String(256), nullable=False),
    Column("model_id", String(256), nullable=False),
    Column("embedding_dim", Integer, nullable=False),
    Column("require_consent", Boolean, nullable=False, default=True),
    Column("store_images", Boolean, nullable=False, default=False),
    Column("vectors_pruned_through", Integer, nullable=False, default=0),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # The calibration searches use (None: the pack's shipped one); changed only on request.
    Column("calibration_id", String(40), nullable=True),
)

persons = Table(
    "persons",
    metadata,
    Column("id", Integer, primary_key=True),
    Column(
        "collection_id", Integer, ForeignKey("collections.id", ondelete="CASCADE"), nullable=False
    ),
    Column("name", String(256), nullable=False),
    Column("metadata", JSON, nullable=False, default=dict),
    Column("consent", Text, nullable=True),
    Column("retain_until", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # The ledger names a person only by this random id; erasing the row unlinks them.
    Column("pseudonym", String(40), nullable=True),
    UniqueConstraint("collection_id", "name", name="uq_person_name"),
    Index("ix_persons_retain_until", "retain_until"),
    Index("ix_persons_pseudonym", "pseudonym", unique=True),
)

faces = Table(
    "faces",
    metadata,
    Column("id", Integer, primary_key=True),
    Column(
        "collection_id", Integer, ForeignKey("collections.id", ondelete="CASCADE"), nullable=False
    ),
    Column("person_id", Integer, ForeignKey("persons.id", ondelete="CASCADE"), nullable=True),
    Column("embedding", LargeBinary, nullable=False),
    Column("box", JSON, nullable=True),
    Column("quality", JSON, nullable=True),
    Column("source", Text, nullable=True),
    Column("image_sha256", String(64), nullable=True),
    Column("image", LargeBinary, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_faces_collection", "collection_id", "id"),
    Index("ix_faces_person", "person_id"),
    sqlite_autoincrement=True,  # face ids are never reused: the ledger refers to them
)

# Every change to a collection's vectors, in commit order. A saved index records the last
# sequence number it contains; on open, later changes are replayed so a stale or crashed
# index is repaired from the database instead of trusted.
vector_changes = Table(
    "vector_changes",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("collection_id", Integer, nullable=False),
    Column("face_id", BigInteger, nullable=False),
    Column("op", String(1), nullable=False),  # "a" added, "d" deleted
    Index("ix_vector_changes_collection_seq", "collection_id", "seq"),
    sqlite_autoincrement=True,
)

# Video indexing jobs: queued, running, done or failed; kept across restarts.
video_jobs = Table(
    "video_jobs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("key_id", String(64), nullable=False),
    Column("collection", String(128), nullable=False),
    Column("path", Text, nullable=False),
    Column("options", JSON, nullable=False),
    Column("purpose", Text, nullable=True),
    Column("case_ref", String(256), nullable=True),
    Column("actor", JSON, nullable=False),
    Column("status", String(16), nullable=False),
    Column("progress", Float, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Column("result", JSON, nullable=True),
    Column("error", JSON, nullable=True),
    Column("webhook", JSON, nullable=True),
    Column("file_name", Text, nullable=True),
    Index("ix_video_jobs_status", "status", "created_at"),
)

# -- the audit ledger and API keys (used by faceledger.ledger) -------------------------
audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("ts", String(40), nullable=False),
    Column("key_id", String(64), nullable=True),
    Column("role", String(32), nullable=True),
    Column("actor", String(256), nullable=True),
    Column("operation", String(64), nullable=False),
    Column("collection", String(128), nullable=True),
    Column("purpose", Text, nullable=True),
    Column("case_ref", String(256), nullable=True),
    Column("image_sha256", String(64), nullable=True),
    Column("request", JSON, nullable=False),
    Column("result", JSON, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("entry_hash", String(64), nullable=False),
    Column("seal", String(64), nullable=False),
    sqlite_autoincrement=True,
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("role", String(32), nullable=False),
    Column("name", String(256), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
)

# The ledger's signed checkpoints and witness delivery state (migration 0003).
audit_checkpoints = Table(
    "audit_checkpoints",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tree_size", Integer, nullable=False),
    Column("root_hash", String(64), nullable=False),
    Column("ts", String(40), nullable=False),
    Column("key_id", String(64), nullable=False),
    Column("note", Text, nullable=False),
    # The complete subtree hashes covering the first tree_size entries, largest first,
    # concatenated hex: the next checkpoint's root is computed from them and the new
    # entries alone (see merkle.extend_frontier).
    Column("frontier", Text, nullable=False),
    sqlite_autoincrement=True,
)

audit_witnesses = Table(
    "audit_witnesses",
    metadata,
    Column("witness", String(1024), primary_key=True),
    Column("delivered_id", Integer, nullable=False, server_default="0"),
    Column("failures", Integer, nullable=False, server_default="0"),
    Column("last_error", Text, nullable=True),
    Column("last_attempt", String(40), nullable=True),
)


# -- the review console (migration 0006_review) -----------------------------------------
# A signed-in console session: the token's SHA-256 (never the token), its key, its CSRF
# token, and when it ends; sign-out sets revoked_at, so a copied cookie stops working.
console_sessions = Table(
    "console_sessions",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("key_id", String(32), nullable=False),
    Column("csrf", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
)

# How a collection's search results become review items: mode always / above / never
# (above: candidates whose stated false match rate is at most max_fmr), how many
# independent reviewers must agree, and how long a decided item's probe crop is kept.
review_settings = Table(
    "review_settings",
    metadata,
    Column(
        "collection_id", Integer, ForeignKey("collections.id", ondelete="CASCADE"), primary_key=True
    ),
    Column("mode", String(16), nullable=False),
    Column("max_fmr", Float, nullable=True),
    Column("reviewers", Integer, nullable=False),
    Column("retain_days", Integer, nullable=False),
)

# One probe face offered as one candidate person. The row goes with the person (cascade)
# and its probe crop is dropped once decided and past erase_after.
review_items = Table(
    "review_items",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "collection_id", Integer, ForeignKey("collections.id", ondelete="CASCADE"), nullable=False
    ),
    Column("person_id", Integer, ForeignKey("persons.id", ondelete="CASCADE"), nullable=False),
    Column("face_id", Integer, nullable=True),  # the candidate's best matching face
    Column("operation", String(32), nullable=False),
    Column("similarity", Float, nullable=False),
    Column("fmr", Float, nullable=False),
    Column("quality", JSON, nullable=True),
    Column("probe_crop", LargeBinary, nullable=True),  # JPEG; None once erased
    Column("probe_embedding", LargeBinary, nullable=False),
    Column("image_sha256", String(64), nullable=True),
    Column("status", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("decided_at", DateTime(timezone=True), nullable=True),
    Column("erase_after", DateTime(timezone=True), nullable=True),
    Index("ix_review_items_status", "collection_id", "status", "id"),
    Index("ix_review_items_person", "person_id"),
    Index("ix_review_items_erase_after", "erase_after"),
    sqlite_autoincrement=True,
)

review_decisions = Table(
    "review_decisions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("item_id", Integer, ForeignKey("review_items.id", ondelete="CASCADE"), nullable=False),
    Column("key_id", String(64), nullable=False),
    Column("decision", String(16), nullable=False),
    Column("note", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("item_id", "key_id", name="uq_review_decision_key"),
)

# "Not this person": probe faces a reviewer rejected for a person; never offered again.
review_rejections = Table(
    "review_rejections",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("person_id", Integer, ForeignKey("persons.id", ondelete="CASCADE"), nullable=False),
    Column("embedding", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_review_rejections_person", "person_id"),
)


# -- the searchable media index (migration 0008_media) -----------------------------------
# One row per indexed video of a collection (re-indexing the same file replaces it).
media_videos = Table(
    "media_videos",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "collection_id", Integer, ForeignKey("collections.id", ondelete="CASCADE"), nullable=False
    ),
    Column("video_sha256", String(64), nullable=False),
    Column("file_name", Text, nullable=False),
    Column("duration", Float, nullable=True),
    Column("complete", Boolean, nullable=False),
    Column("speech_problem", Text, nullable=True),
    Column("indexed_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("collection_id", "video_sha256", name="uq_media_video"),
    Index("ix_media_videos_indexed_at", "indexed_at"),
    sqlite_autoincrement=True,
)

# The timeline of a video: kind "person" (an appearance interval), "text" (a line shown on
# screen) or "speech" (a transcript segment). An enrolled person is referred to by id only
# (ON DELETE SET NULL: erasing the person leaves an unnamed "erased person" interval);
# ``label`` holds an unknown person's per-video label. Words are searched in ``text`` and
# ``text_en``: SQLite through the FTS5 table ``media_text`` (external content, kept in
# step by triggers, see the migration), PostgreSQL through a GIN index on
# ``to_tsvector('simple', text || ' ' || text_en)``.
media_segments = Table(
    "media_segments",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("video_id", Integer, ForeignKey("media_videos.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(8), nullable=False),
    Column("t_start", Float, nullable=False),
    Column("t_end", Float, nullable=False),
    Column("person_id", Integer, ForeignKey("persons.id", ondelete="SET NULL"), nullable=True),
    Column("label", String(256), nullable=True),
    Column("text", Text, nullable=True),
    Column("text_en", Text, nullable=True),
    Column("language", String(16), nullable=True),
    Column("confidence", Float, nullable=True),
    Index("ix_media_segments_video", "video_id", "kind", "t_start"),
    Index("ix_media_segments_person", "person_id"),
    sqlite_autoincrement=True,
)

# The pgvector index's vectors (``--index pgvector``; PostgreSQL with the ``vector``
# extension only, created by migration 0009 or when such a store first opens). One row per
# face, deleted with it (ON DELETE CASCADE); each collection has a partial HNSW index on
# ``embedding::halfvec(dim)``, made by ``faceledger.index.pgvector``.
face_vectors = Table(
    "face_vectors",
    metadata,
    Column("face_id", Integer, ForeignKey("faces.id", ondelete="CASCADE"), primary_key=True),
    Column("collection_id", Integer, nullable=False),
    Column("embedding", HALFVEC(), nullable=False),
)

# Rate-limit token buckets shared by the replicas of a PostgreSQL store (SQLite keeps its
# one process's buckets in memory); see ``faceledger.store.ratelimits``.
rate_buckets = Table(
    "rate_buckets",
    metadata,
    Column("key", String(300), primary_key=True),
    Column("tokens", Float, nullable=False),
    Column("updated", Float, nullable=False),
    Column("allowed", Boolean, nullable=False),
)
