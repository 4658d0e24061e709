#!/usr/bin/env bash
# Submit the prep array and a merge job that starts only when every array task succeeded.
#   RAW=raw/ptbxl PARTS=parts STORE=ptbxl.zarr bash examples/slurm/submit-prep.sh
# (the variables reach both jobs: sbatch passes the environment on by default)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
jobid=$(sbatch --parsable "$here/prep-array.sbatch")           # prints "jobid[;cluster]"
jobid=${jobid%%;*}
# afterok on an array job: merge starts once all its tasks exit 0. If a task fails, merge never
# starts (DependencyNeverSatisfied): scancel it, rerun the failed tasks, then sbatch merge.sbatch.
sbatch --dependency=afterok:"$jobid" "$here/merge.sbatch"
