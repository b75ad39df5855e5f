"""Storage of datasets and chunks: per-dataset HNSW indexes of any dimension, full-text vectors."""

from __future__ import annotations

import random

from sqlalchemy import text

from kb.db.store import chunks as chunk_store
from kb.db.store import datasets as dataset_store
from kb.db.tables import Collection


def _unit(dim: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    values = [rng.gauss(0, 1) for _ in range(dim)]
    norm = sum(v * v for v in values) ** 0.5
    return [v / norm for v in values]


def _collection(session, dataset_id: int, name: str) -> int:
    row = Collection(dataset_id=dataset_id, name=name, source_type="text", content_hash=name)
    session.add(row)
    session.flush()
    return row.id


def test_datasets_of_different_dimensions_each_get_their_own_typed_hnsw_index(db):
    with db.session() as session:
        small = dataset_store.add_dataset(session, name="small", embed_model="a", embed_dim=3, embed_variant="fp32")
        large = dataset_store.add_dataset(session, name="large", embed_model="b", embed_dim=5, embed_variant="fp32")
        small_col, large_col = _collection(session, small.id, "s"), _collection(session, large.id, "l")
        chunk_store.add_chunks(session, small.id, small_col, [chunk_store.NewChunk(q="three", embedding=_unit(3, 1))])
        chunk_store.add_chunks(session, large.id, large_col, [chunk_store.NewChunk(q="five", embedding=_unit(5, 2))])
        session.commit()
        indexes = dict(
            session.execute(text("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'chunk'")).all()
        )
        stored = session.execute(text("SELECT vector_dims(embedding) FROM chunk ORDER BY id")).scalars().all()
    assert "vector(3)" in indexes[dataset_store.vector_index_name(small.id)]
    assert "vector(5)" in indexes[dataset_store.vector_index_name(large.id)]
    assert stored == [3, 5], "vectors are stored at their own dimension, never padded"


def test_vector_search_inside_a_dataset_uses_its_hnsw_index_at_realistic_size(db):
    """The query's expression and predicate must match the partial index; at 2,000 rows of 384-d the
    planner must then prefer it (vectors stored PLAIN, see the migration)."""
    with db.session() as session:
        dataset = dataset_store.add_dataset(session, name="d", embed_model="a", embed_dim=384, embed_variant="fp32")
        collection_id = _collection(session, dataset.id, "c")
        chunk_store.add_chunks(
            session,
            dataset.id,
            collection_id,
            [chunk_store.NewChunk(q=f"chunk {i}", embedding=_unit(384, i), position=i) for i in range(2000)],
        )
        session.commit()
        session.execute(text("ANALYZE chunk"))
        plan = "\n".join(
            session.execute(
                text(
                    f"EXPLAIN SELECT id FROM chunk WHERE dataset_id = {dataset.id} "
                    "ORDER BY embedding::vector(384) <=> CAST(:q AS vector(384)) LIMIT 5"
                ),
                {"q": chunk_store.vector_literal(_unit(384, 99999))},
            ).scalars()
        )
    assert f"Index Scan using {dataset_store.vector_index_name(dataset.id)}" in plan, plan[:300]


def test_deleting_a_dataset_drops_its_index_and_chunks(db):
    with db.session() as session:
        dataset = dataset_store.add_dataset(session, name="gone", embed_model="a", embed_dim=3, embed_variant="fp32")
        collection_id = _collection(session, dataset.id, "c")
        chunk_store.add_chunks(session, dataset.id, collection_id, [chunk_store.NewChunk(q="x", embedding=_unit(3, 0))])
        session.commit()
        assert dataset_store.delete_dataset(session, dataset.id)
        session.commit()
        left = session.execute(text("SELECT count(*) FROM chunk")).scalar()
        index = session.execute(
            text("SELECT 1 FROM pg_indexes WHERE indexname = :n"), {"n": dataset_store.vector_index_name(dataset.id)}
        ).first()
    assert left == 0 and index is None


def test_chinese_chunks_are_segmented_for_full_text_search(db):
    with db.session() as session:
        dataset = dataset_store.add_dataset(session, name="zh", embed_model="a", embed_dim=3, embed_variant="fp32")
        collection_id = _collection(session, dataset.id, "c")
        chunk_store.add_chunks(
            session,
            dataset.id,
            collection_id,
            [chunk_store.NewChunk(q="他在上海交通大学读书。", embedding=_unit(3, 0))],
        )
        session.commit()
        hits = session.execute(
            text("SELECT count(*) FROM chunk WHERE fts @@ to_tsquery('english', '交通 & 大学')")
        ).scalar()
        english = chunk_store.fts_source("Running dogs", "", "")
    assert hits == 1
    assert english == "Running dogs"
