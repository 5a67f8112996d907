"""The run store: it owns every path, writes every file atomically, and says when a job is done.

Layout (every folder name comes from what determines its contents; see identity.py):

    <root>/train_<h>/config.json                          a dense experiment: data, model, training, numerics
    <root>/train_<h>/seed_<s>/level_0/                    the dense run of replicate s (shared, see below)
    <root>/train_<h>/seed_<s>/prefix_k<k>/                the dense run stopped at step k (theta_k, rewinding)
    <root>/lottery_<h>/config.json                        an IMP experiment: the dense one + pruning + retraining
    <root>/lottery_<h>/seed_<s>/level_0 -> ../../train_<h'>/seed_<s>/level_0   (a relative link)
    <root>/lottery_<h>/seed_<s>/level_<L>/                a pruned level: mask, init, final, metrics, summary
    .../level_<L>/control_<variant>_<i>/                  a control branched off the level
    .../level_<L>/stability_k<k>/copy_<c>/                the two copies of a stability analysis from step k
    .../level_<L>/stability_k<k>/analysis_<h>/stability.json   one analysis of those copies (settings in h)
    <root>/ticket_<h>/seed_<s>/level_<L>/                 a ticket file trained again (--ticket)

Every experiment that starts from the same dense run links its level 0 to that one folder, so the dense
network is trained once, whatever the pruning. Every file is written to a temporary name, fsynced and renamed
into place (files.atomic_write): a killed run or a power loss leaves the old file or the new one, never half
of one, and a temporary file left by a killed writer is removed when its job runs again.

Integrity. A job is finished when its summary.json is readable and every file it records is intact:
`finish_job` writes the summary last, with the blake2b-256 of each file of the job's folder ("files") and a
digest of each input job's recorded files ("inputs", when run through jobs.execute). `is_done` checks them
(once per process while nothing changes): a job whose summary is unreadable, whose files are missing or
damaged, or whose input was recomputed with other results is said so in one line on stderr, its summary is
moved to summary.json.damaged-<n>, its other files are deleted, and it is recomputed. The summary also
records its own hash ("summary_hash"), so an edited summary that is still valid JSON is found too. Summaries
written before these hashes were recorded are accepted as they are. Reading a summary or config.json of
another shape is one line naming the file (records.py). Checkpoints carry their own digest: a torn or damaged
one is deleted and the job restarts from its start. `verify` lists every problem under a folder without
changing anything.

Why dependents of a recomputed job stay valid: a job's result is a function of its identity, and training
on the CPU is bit-identical for a given identity (device and threads are part of it), so a recomputed job
writes the same bytes and the inputs its dependents recorded still match. Where that does not hold (GPU
kernels that are not deterministic), the input digests differ and the dependents are recomputed in turn.

The package, one module per job (import the names from here: `from ticketlab.store import is_done`):

    layout.py        the root, file names, every folder name, links, what is part of a store (store_part)
    formats.py       JSON, safetensors weights and checkpoints: written atomically, read with one-line errors
    done.py          the done rule: finish_job, is_done (hash-checked), running_job, set-aside summaries;
                     job_problems / is_intact: the same checks for readers, changing nothing
    records.py       summaries and experiments' config.json; the finished jobs under a folder
    verification.py  verify: every problem under a folder, changing nothing

files.py (atomic_write, file hashes, stale temporary files) sits below the store, because masks.py writes
masks with it too; its names are re-exported here as part of the store's API.
"""

from ..files import (atomic_write, file_digest, fsync_dir, is_tmp, remove_stale_tmp,  # noqa: F401  (this API)
                     write_safetensors)
from .done import (DAMAGED, SUMMARY_HASH, finish_job, is_done, is_intact, job_files, job_problems,  # noqa: F401
                   recording_inputs, running_job)
from .formats import (Record, load_checkpoint, load_weights, read_json, save_checkpoint, save_weights,  # noqa: F401
                      write_json)
from .layout import (BIAS_MASK, CHECKPOINT, CONFIG, DEFAULT_ROOT, FINAL, INIT, MASK, METRICS,  # noqa: F401
                     STABILITY, SUMMARY, analysis_dir, check_dir, control_dir, copy_dir, density_dir, experiment_dir,
                     is_experiment, level_dir, link, prefix_dir, seed_dir, seed_dirs, seed_of, stability_dir,
                     store_part)
from .records import (config_problem, finished_levels, job_summaries, read_config, read_summary,  # noqa: F401
                      record_experiment, stability_files, unreadable_jobs)
from .verification import verify  # noqa: F401
