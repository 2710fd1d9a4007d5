"""Build the covid-cxr-mini chest X-ray set from local copies of its sources.

:func:`build_dataset` reads plain local checkouts (``git clone``) or extracted
GitHub archives of the six source repositories listed in
:mod:`medadv_lib.data.sources`, plus the NIH ``Data_Entry_2017_v2020.csv.gz``
table, applies the selection rules of the shared snapshot and writes::

    OUT/images/<label>/<image_id>.png   8-bit grayscale, image_size x image_size
    OUT/metadata.csv                    one row per image (METADATA_COLUMNS)
    OUT/SOURCES.md                      sources, counts, dropped images, rules
    OUT/build_summary.json              the summary returned by build_dataset

The rules (the facts of ``SOURCES.md``): labels per source; frontal views only
(PA, AP, AP Supine, AP erect; images whose source states no view are kept as
"frontal (visual check)" unless listed in :data:`VISUAL_EXCLUDE`); patients with
a known age below 18 dropped, and COVID-CXNet files with a "p" suffix
(paediatric); at most 600 normal and 600 pneumonia images; near-duplicates
across sources found with perceptual hashes and correlations, one kept per
cluster (earliest source), clusters with an excluded member or with
conflicting labels dropped whole; ``patient_id`` = ``<source>-<id>`` or
``<source>-imgNNNN``; a patient-disjoint 70/15/15 split stratified by (label,
source) with a fixed seed.

How a source directory is recognised (first rule that matches):

1. its folder name: ``owner+name`` (``hida6+covid-chestxray-dataset``), ``name``
   (``covid-chestxray-dataset``, a ``git clone``) or ``name-<commit>`` (an
   extracted GitHub archive, ``COVID-CXNet-3ade488b...``); case-insensitive;
2. its content: ``chest_xray_images/covid19/`` (COVID-CXNet), ``X-Ray Image
   DataSet/`` (muhammedtalo/COVID-19), ``data.csv`` + ``png/`` (Hannover),
   ``torchxrayvision/data/Data_Entry_2017_v2020.csv.gz`` (NIH table), or a
   ``metadata.csv`` whose header has ``folder`` and ``filename`` (ieee8023 copy),
   ``imagename`` (Actualmed), or ``patientid``, ``finding`` and ``view`` only
   (Figure1).

A folder that is not recognised itself but holds recognised source folders (a
download folder such as ``data/raw``) stands for those folders.  A mapping
``{key: dir}`` skips recognition; keys are the source keys
(``ieee mhh amed fig1 nih cxnet``) or ``owner/name``, and ``nih_meta`` (or
``mlmed/torchxrayvision``) for the NIH table (a file, or a folder holding it).
The NIH table may also be given as a file path in the list, or lie at the top
of the ``muhammedtalo/COVID-19`` folder.

The commit recorded per row is the checkout's ``.git`` HEAD, else the commit in
its folder name (``name-<commit>``), else the one pinned in ``sources.py``.

Layout (the sections of the build, in order): :mod:`.rules` (selection rules, constants), :mod:`.inputs`
(recognising source folders), :mod:`.candidates` (reading each source's table), :mod:`.images`
(decoding, fingerprints), :mod:`.duplicates` (near-duplicate clusters), :mod:`.split` (ids, patients,
the patient-disjoint split), :mod:`.output` (files, SOURCES.md), :mod:`.pipeline` (:func:`build_dataset`).
"""
from .rules import (COVIDNET_FINDINGS, DUP_MAX_DIST, DataBuildError, FINGERPRINT_SIZE, FRONTAL_VIEWS, IEEE_FINDINGS, IMAGE_SUFFIXES, LABEL_CAPS, METADATA_COLUMNS, MIN_AGE, MissingSourceWarning, NIH_FOLDERS, SPLIT_SHARES, VISUAL_CHECK_VIEW, VISUAL_EXCLUDE, _ANY_SOURCE_KEYS, is_duplicate, maybe_same_patient)  # noqa: F401
from .inputs import (Checkout, Inputs, _COMMIT_IN_NAME, _commit_of, _csv_header, _git_dir, _identify_by_content, _identify_by_name, _name_aliases, _nih_table_in, _normalise_key, _recognised_children, git_head, identify_source_dir, resolve_inputs)  # noqa: F401
from .candidates import (Candidate, READERS, _SEX, _covidnet_candidate, _frontal, list_files, make_candidate, read_actualmed, read_candidates, read_csv_rows, read_cxnet, read_figure1, read_ieee, read_mhh, read_nih, read_nih_table)  # noqa: F401
from .images import (SIZE_REASON, Fingerprints, LoadedImage, UnusableImage, _skip_reason, _zscore, fingerprint, load_images, to_gray8)  # noqa: F401
from .duplicates import (DisjointSet, SimilarPairs, Survivor, _RANK, _order, find_similar_pairs, resolve_duplicates)  # noqa: F401
from .split import (Selected, assign_splits, group_patients, select_and_name)  # noqa: F401
from .output import (_RULES_TEXT, _check_out_dir, _md_table, _replace_dir, _reporter, make_summary, metadata_rows, sources_markdown, write_images, write_metadata)  # noqa: F401
from .pipeline import (build_dataset)  # noqa: F401
