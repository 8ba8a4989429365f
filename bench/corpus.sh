#!/bin/sh
# corpus.sh - build (or reuse) the benchmark corpus: rootfs trees A/B/C, their tars, an OCI
# layout and a 1 GiB random file.  The recipe is the team's shared make-corpus.sh (outside
# this repo); this wrapper finds it, picks the corpus dir and runs it.  Needs root.
#
#   WORK=dir   corpus dir (default /var/tmp/ctrfs-corpus; bench/run.py uses the same default)
#   SHARED=dir where shared/ is (default: ../shared beside the repo, then /work/shared)
#   FORCE=1, BIG=0, SUITE, MIRROR, PKGS_B, PKGS_C are passed through to make-corpus.sh.
#
# Idempotent: make-corpus.sh skips every step whose .done marker exists, so a rerun on a
# complete corpus only rewrites corpus-stats.txt.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
WORK=${WORK:-/var/tmp/ctrfs-corpus}
export WORK

script=""
for d in ${SHARED:+"$SHARED"} "$repo/../shared" /work/shared; do
  if [ -f "$d/bench/make-corpus.sh" ]; then script="$d/bench/make-corpus.sh"; break; fi
done
if [ -z "$script" ]; then
  cat >&2 <<MSG
corpus.sh: cannot find shared/bench/make-corpus.sh (looked in \$SHARED, $repo/../shared
and /work/shared).  The corpus recipe lives in the team's shared/ folder, outside the repo;
set SHARED=/path/to/shared, or build the corpus by hand into $WORK:
  rootfs/{A,B,C}  debootstrap bookworm --variant=minbase (B adds python3,git; C adds
                  build-essential,perl,curl), tars/{A,B,C}.tar of each, oci/ (umoci, tags A B C),
                  big/big.bin (1 GiB random), with the .done markers make-corpus.sh writes.
MSG
  exit 2
fi
[ "$(id -u)" = 0 ] || { echo "corpus.sh: must run as root (debootstrap)" >&2; exit 1; }

mkdir -p "$WORK"
echo "corpus.sh: $script -> $WORK" >&2
# make-corpus.sh uses bash arrays: run it with bash, never sh (dash rejects `need=()`)
exec bash "$script"
