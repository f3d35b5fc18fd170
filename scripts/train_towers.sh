#!/usr/bin/env bash
# Reproduces the package's reference towers from their recipes: the pre-training corpus, then the CLIP and
# ImageNet-style towers of both families, two at a time (one thread each), then exports them as fp16 files
# with provenance (`clipvil ship-tower`). Resumable: rerun after a kill and every finished step is kept.
#   bash scripts/train_towers.sh [WORK_DIR]        (default runs/towers; a few hours on 2 cores)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/env.sh"
work="$(realpath -m "${1:-$root/runs/towers}")"
cv="$root/.venv/bin/clipvil"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 OMP_NUM_THREADS=1
mkdir -p "$work"
"$cv" make-corpus --out "$work/corpus" --no-progress
train() {  # recipe run-name epochs corpus-key
  "$cv" train "$root/configs/$1.yaml" "$4=$work/corpus" "out_dir=$work/$2" "train.epochs=$3" > "$work/$2.log" 2>&1
}
train_pair() {  # family epochs: its CLIP and its classifier side by side
  train "clip/web_$1_tiny" "clip_$1" "$2" task.data.root & local a=$!
  train "classify/web_$1_tiny" "classify_$1" "$2" task.root & local b=$!
  wait $a && wait $b
}
train_pair vit "${VIT_EPOCHS:-3}"
train_pair rn "${RN_EPOCHS:-2}"
for fam in vit rn; do
  "$cv" ship-tower --checkpoint "$work/clip_$fam/checkpoints/last.pt" --name "clip-$fam-tiny" \
    --recipe "configs/clip/web_${fam}_tiny.yaml" --corpus "$work/corpus" --out "$root/src/clipvil/weights"
  "$cv" ship-tower --checkpoint "$work/classify_$fam/checkpoints/last.pt" --name "imagenet-$fam-tiny" \
    --recipe "configs/classify/web_${fam}_tiny.yaml" --corpus "$work/corpus" --out "$root/src/clipvil/weights"
done
