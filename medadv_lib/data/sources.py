"""The upstream sources of the covid-cxr-mini chest X-ray set, as data.

Six public GitHub repositories supply the images, and one file of
``mlmed/torchxrayvision`` supplies the NIH ChestX-ray8 labels, ages, sexes and
views of the NIH images.  Every item is pinned to the commit the shared snapshot
was built from (see ``SOURCES.md`` in the snapshot's dataset folder).

Order matters: of a set of near-duplicate images, the copy from the earliest
source in :data:`SOURCES` is kept.

Download addresses come from URL templates with the fields ``{repo}``
(``owner/name``), ``{owner}``, ``{name}``, ``{commit}`` and ``{path}``.  For a
repository archive ``{path}`` is the archive's file name ``{name}-{commit}.tar.gz``
(the name GitHub gives it); for a single file it is the file's path inside the
repository.  So one mirror template such as
``https://mirror.example/{repo}/{commit}/{path}`` serves both kinds.

``sha256`` is ``None`` for every item: the digests could not be computed where
this table was written (no network).  :mod:`medadv_lib.data.download` then trusts
the first download and records its digest in ``checksums.json`` (see there).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Mapping, Union

from .. import LABELS  # noqa: F401  (re-exported: class names in label-index order)


GITHUB_ARCHIVE_URL = "https://codeload.github.com/{repo}/tar.gz/{commit}"
"""Default template for a repository archive (a ``.tar.gz`` of one commit)."""

GITHUB_RAW_URL = "https://raw.githubusercontent.com/{repo}/{commit}/{path}"
"""Default template for one file of a repository at one commit."""

URL_TEMPLATE_ENV = "MEDADV_SOURCE_URL"
"""Environment variable holding a URL template that replaces both defaults."""


@dataclass(frozen=True)
class RepoSource:
    """One image source: a GitHub repository pinned to a commit.

    Attributes:
        key: short name used in image ids and ``patient_id`` (``ieee``, ``mhh``, ...).
        repo: ``owner/name`` on GitHub.
        commit: the pinned commit (40 hex digits).
        about: what the repository holds.
        license: the license or terms the repository itself states.
        default_license: the per-image ``license`` value where the source gives none.
        expected: images per label in the shared snapshot (built with files of
            4 MiB or more missing), for comparison with a new build.
        sha256: digest of the archive, or ``None`` (trust on first use).
    """

    key: str
    repo: str
    commit: str
    about: str
    license: str
    default_license: str
    expected: Mapping[str, int] = field(default_factory=dict)
    sha256: str | None = None

    @property
    def owner(self) -> str:
        """The GitHub owner (``hida6`` for ``hida6/covid-chestxray-dataset``)."""
        return self.repo.split("/", 1)[0]

    @property
    def name(self) -> str:
        """The repository name without its owner."""
        return self.repo.split("/", 1)[1]

    @property
    def dirname(self) -> str:
        """Folder name of the extracted archive, as in GitHub tarballs: ``name-commit``."""
        return f"{self.name}-{self.commit}"

    @property
    def path(self) -> str:
        """The ``{path}`` field of a URL template: the archive's file name."""
        return f"{self.dirname}.tar.gz"

    @property
    def ident(self) -> str:
        """Key of this item in ``checksums.json``: ``owner/name@commit``."""
        return f"{self.repo}@{self.commit}"

    @property
    def is_archive(self) -> bool:
        """Repository items are ``.tar.gz`` archives to extract."""
        return True

    def url(self, template: str | None = None) -> str:
        """Download address; ``template`` (or ``$MEDADV_SOURCE_URL``) overrides the default."""
        return fill_template(template or os.environ.get(URL_TEMPLATE_ENV) or GITHUB_ARCHIVE_URL, self)


@dataclass(frozen=True)
class RepoFile:
    """One file of a repository at a commit (the NIH metadata table).

    Attributes:
        key: short name (``nih_meta``).
        repo: ``owner/name`` on GitHub.
        commit: the pinned commit.
        path: the file's path inside the repository.
        about: what the file holds.
        license: the repository's license.
        sha256: digest of the file, or ``None`` (trust on first use).
    """

    key: str
    repo: str
    commit: str
    path: str
    about: str
    license: str
    sha256: str | None = None

    @property
    def owner(self) -> str:
        """The GitHub owner."""
        return self.repo.split("/", 1)[0]

    @property
    def name(self) -> str:
        """The repository name without its owner."""
        return self.repo.split("/", 1)[1]

    @property
    def dirname(self) -> str:
        """Folder the file is stored under, like an extracted archive: ``name-commit``."""
        return f"{self.name}-{self.commit}"

    @property
    def filename(self) -> str:
        """Base name of the file."""
        return self.path.rsplit("/", 1)[-1]

    @property
    def ident(self) -> str:
        """Key of this item in ``checksums.json``: ``owner/name@commit:path``."""
        return f"{self.repo}@{self.commit}:{self.path}"

    @property
    def is_archive(self) -> bool:
        """A single file is stored as is, not extracted."""
        return False

    def url(self, template: str | None = None) -> str:
        """Download address; ``template`` (or ``$MEDADV_SOURCE_URL``) overrides the default."""
        return fill_template(template or os.environ.get(URL_TEMPLATE_ENV) or GITHUB_RAW_URL, self)


ManifestItem = Union[RepoSource, RepoFile]


def fill_template(template: str, item: ManifestItem) -> str:
    """Expand a URL template for ``item``; an unknown ``{field}`` raises ``ValueError``."""
    try:
        return template.format(repo=item.repo, owner=item.owner, name=item.name,
                               commit=item.commit, path=item.path, key=item.key)
    except (KeyError, IndexError) as exc:
        raise ValueError(f"URL template {template!r} uses an unknown field {exc}; "
                         "known: {repo} {owner} {name} {commit} {path} {key}") from None


_RESEARCH_ONLY = 'no license file; README: "intended to be used for research purposes only"'

SOURCES: tuple[RepoSource, ...] = (
    RepoSource(
        key="ieee", repo="hida6/covid-chestxray-dataset",
        commit="584034aa7fbf06496741f11008d72fd791c8e443",
        about="fork of ieee8023/covid-chestxray-dataset (Cohen et al.), state of 2020-06-22",
        license=("per image in metadata.csv column `license` (CC BY-NC-SA, CC BY-NC-SA 4.0, CC BY 3.0, "
                 'CC BY-NC-ND, CC BY-NC-ND 4.0, CC BY 4.0, CC BY, Apache 2.0, "listed as authorized for '
                 'everyone", or empty); metadata.csv itself: CC BY-NC-SA 4.0'),
        default_license="not stated in source metadata",
        expected={"normal": 0, "pneumonia": 74, "COVID-19": 416}),
    RepoSource(
        key="mhh", repo="ml-workgroup/covid-19-image-repository",
        commit="ad7ab099b425f16e06bba22322336b7d6a732965",
        about="Hannover Medical School COVID-19 image repository, downscaled PNGs (all COVID-19 cases)",
        license="CC BY 3.0", default_license="CC BY 3.0",
        expected={"normal": 0, "pneumonia": 0, "COVID-19": 226}),
    RepoSource(
        key="amed", repo="agchung/Actualmed-COVID-chestxray-dataset",
        commit="27240dd8dec9454bc97f9f3c0c432ef434de2517",
        about="Actualmed COVID-19 chest X-ray dataset (COVID-Net initiative)",
        license=_RESEARCH_ONLY,
        default_license="not stated (README: research purposes only)",
        expected={"normal": 18, "pneumonia": 0, "COVID-19": 26}),
    RepoSource(
        key="fig1", repo="agchung/Figure1-COVID-chestxray-dataset",
        commit="95bb569e55f4110d3b734c0f355340e04e16989a",
        about="Figure 1 COVID-19 chest X-ray dataset (COVID-Net initiative)",
        license=_RESEARCH_ONLY,
        default_license="not stated (README: research purposes only)",
        expected={"normal": 3, "pneumonia": 2, "COVID-19": 33}),
    RepoSource(
        key="nih", repo="muhammedtalo/COVID-19",
        commit="ee3e2cffc0824711bed675275506b26f19be7198",
        about=("500 No_findings + 500 Pneumonia frontal images taken from NIH ChestX-ray8 "
               "(Ozturk et al. 2020, DarkCovidNet)"),
        license="no license file in the repository",
        default_license="not stated in source repository",
        expected={"normal": 426, "pneumonia": 477, "COVID-19": 0}),
    RepoSource(
        key="cxnet", repo="armiro/COVID-CXNet",
        commit="3ade488b3828705706fc5f58c0667421d8b04a01",
        about="COVID-CXNet COVID-19 image collection (Haghanifar et al.)",
        license="images: CC BY 4.0 (README badge); code: MIT License",
        default_license="CC BY 4.0",
        expected={"normal": 0, "pneumonia": 0, "COVID-19": 625}),
)
"""The image sources, in order of preference for near-duplicates."""

NIH_METADATA = RepoFile(
    key="nih_meta", repo="mlmed/torchxrayvision",
    commit="f4087a0b0d0cdc6a5877fb5456965b6d29adb1e5",
    path="torchxrayvision/data/Data_Entry_2017_v2020.csv.gz",
    about="NIH ChestX-ray8 table: labels, age, sex and view of the NIH images (metadata only)",
    license="Apache License 2.0")
"""The NIH ``Data_Entry_2017_v2020.csv.gz`` table, read for the ``nih`` source."""

MANIFEST: tuple[ManifestItem, ...] = (*SOURCES, NIH_METADATA)
"""Everything :func:`medadv_lib.data.download.download_sources` fetches by default."""

SOURCE_BY_KEY: dict[str, RepoSource] = {s.key: s for s in SOURCES}
""":data:`SOURCES` by ``key``."""

EXPECTED_TOTAL = 2326
"""Images in the shared snapshot (``max_file_mib=4``, seed 1234)."""
