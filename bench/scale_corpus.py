"""The big corpus of `bench/retrieval.py --scale`: both kits' chunks plus synthetic filler in both languages.

Filler text follows Zipf's law (s = 1) over each language's ranked vocabulary: the kit's own words
first, in the order of their frequency in the kit (English: squad's words; Chinese: cmrc's jieba
words), then a long tail of made-up words (English: `zq` + letters; Chinese: two-character words of
the kit's characters), `TAIL_WORDS` per language. A corpus of 80M words drawn from a vocabulary of
only the kits' 20k words would make every kit word common; real text of that size has a vocabulary in
the millions (Heaps' law). English filler chunks have 80 words, Chinese ones 60 (about 120 characters);
half of the filler is in each language. The tsvector of a Chinese filler chunk is built from its words
joined by spaces, which is what kb's jieba segmentation hands PostgreSQL.

Filler vectors are NOT made by a model (1M texts would take days on two cores): each is the
normalised, rarity-weighted sum of per-word random vectors (a hashing-trick embedder in numpy), so
chunks sharing words lie close, as a bag-of-words embedder would put them. The kits' chunks and every
query use the real default embedder, so filler never looks semantically like a kit question to the
vector list; it competes with the kits' chunks in full text and for the HNSW graph.

Everything is seeded: the same `--scale` sizes give the same corpus.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np
from scipy import sparse
from tqdm import tqdm

SEED = 20261202
TAIL_WORDS = 1_000_000
WORD_VECTORS = 65_536  # the hashing trick's table: rank modulo this picks a word's random vector
EN_WORDS, ZH_WORDS = 80, 60
BATCH = 10_000
_CJK_WORD = re.compile(r"^[\u3400-\u4dbf\u4e00-\u9fff]+$")
_EN_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")


def _letters(n: int) -> str:
    out = ""
    while True:
        n, digit = divmod(n, 26)
        out += chr(97 + digit)
        if n == 0:
            return out


def english_vocabulary(kit: Path) -> list[str]:
    """squad's words by falling frequency, then the made-up tail."""
    counts = Counter(w for doc in sorted((kit / "docs").glob("*.md")) for w in _EN_WORD.findall(doc.read_text("utf-8")))
    words = [w for w, _ in counts.most_common()]
    return words + [f"zq{_letters(i)}" for i in range(TAIL_WORDS)]


def chinese_vocabulary(kit: Path) -> list[str]:
    """cmrc's jieba words by falling frequency, then two-character words of its characters."""
    from kb.db.textsearch import tokenizer_for

    tokenizer = tokenizer_for()
    counts: Counter[str] = Counter()
    for doc in sorted((kit / "docs").glob("*.md")):
        counts.update(w for w in tokenizer.cut(doc.read_text("utf-8")) if _CJK_WORD.match(w))
    words = [w for w, _ in counts.most_common()]
    chars = sorted({c for w in words for c in w})
    rng = np.random.default_rng(SEED)
    pairs = rng.integers(0, len(chars), size=(TAIL_WORDS, 2))
    return words + [chars[a] + chars[b] for a, b in pairs]


class Filler:
    """Seeded filler chunks: text drawn by Zipf's law from a vocabulary, and a hashing-trick vector."""

    def __init__(self, english: list[str], chinese: list[str], dim: int):
        self.vocabularies = (np.array(english, dtype=object), np.array(chinese, dtype=object))
        self.cdfs = tuple(np.cumsum(1.0 / np.arange(1, len(v) + 1)) for v in self.vocabularies)
        table = np.random.default_rng(SEED).standard_normal((WORD_VECTORS, dim)).astype(np.float32)
        self.word_vectors = table / np.linalg.norm(table, axis=1, keepdims=True)

    def batch(self, start: int, count: int) -> tuple[list[str], list[str], np.ndarray]:
        """Chunks `start` .. `start + count` of the filler: texts, their full-text sources and unit vectors."""
        rng = np.random.default_rng([SEED, start])
        texts, sources, vectors = [], [], []
        for chinese in (False, True):
            n = count // 2 + (count % 2 if chinese else 0)
            length = ZH_WORDS if chinese else EN_WORDS
            cdf = self.cdfs[chinese]
            ranks = np.searchsorted(cdf, rng.random((n, length)) * cdf[-1])
            words = self.vocabularies[chinese][ranks]
            sources.extend(" ".join(row) for row in words)
            texts.extend(("".join(row) for row in words) if chinese else sources[-n:])
            weights = np.log(ranks + 2.0).astype(np.float32).ravel()  # rarer words weigh more, as IDF would
            rows = np.repeat(np.arange(n), length)
            bags = sparse.csr_matrix((weights, (rows, (ranks % WORD_VECTORS).ravel())), shape=(n, WORD_VECTORS))
            summed = bags @ self.word_vectors
            vectors.append(summed / np.linalg.norm(summed, axis=1, keepdims=True))
        return texts, sources, np.concatenate(vectors)


def add_filler(conn, filler: Filler, dataset_id: int, collection_id: int, start: int, count: int) -> None:
    """COPY `count` filler chunks (binary, through a temporary table) into the dataset, with a progress bar."""
    from pgvector.psycopg import register_vector

    register_vector(conn)
    dim = filler.word_vectors.shape[1]
    conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS filler (pos int, q text, src text, embedding vector({dim}))")
    with tqdm(total=count, desc="filler chunks", unit="chunk") as bar:
        for offset in range(start, start + count, BATCH):
            n = min(BATCH, start + count - offset)
            texts, sources, vectors = filler.batch(offset, n)
            conn.execute("TRUNCATE filler")
            with conn.cursor().copy("COPY filler (pos, q, src, embedding) FROM STDIN WITH (FORMAT BINARY)") as copy:
                copy.set_types(["int4", "text", "text", "vector"])
                for i in range(n):
                    copy.write_row((offset + i, texts[i], sources[i], vectors[i]))
            conn.execute(
                "INSERT INTO chunk (dataset_id, collection_id, position, q, token_count, embedding, fts) "
                "SELECT %s, %s, pos, q, array_length(regexp_split_to_array(src, ' '), 1), embedding, "
                "to_tsvector('english', src) FROM filler",
                (dataset_id, collection_id),
            )
            conn.commit()
            bar.update(n)
