#!/usr/bin/env bash
# Reproduces the package's reference towers from their recipes: the pre-training corpus (`clipvil make-corpus`,
# ~5 min), then the CLIP and ImageNet-style towers of each family side by side (one thread each; ViT ~65 min,
# ResNet ~60 min on 2 cores beside other jobs), then writes them as fp16 files with provenance
# (`clipvil ship-tower`) into the package. Resumable: rerun after a kill and every finished step is kept.
#   bash scripts/train_towers.sh [WORK_DIR]        (default runs/towers)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/env.sh"
work="$(realpath -m "${1:-$root/runs/towers}")"
cv="$root/.venv/bin/clipvil"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 OMP_NUM_THREADS=1
mkdir -p "$work"
"$cv" make-corpus --out "$work/corpus" --no-progress
train() {  # recipe run-name corpus-key
  "$cv" train "$root/configs/$1.yaml" "$3=$work/corpus" "out_dir=$work/$2" > "$work/$2.log" 2>&1
}
for fam in vit rn; do
  train "clip/web_${fam}_tiny" "clip_$fam" task.data.root & a=$!
  train "classify/web_${fam}_tiny" "classify_$fam" task.root & b=$!
  wait $a; wait $b
  "$cv" ship-tower --checkpoint "$work/clip_$fam/checkpoints/last.pt" --name "clip-$fam-tiny" \
    --recipe "clip/web_${fam}_tiny.yaml" --corpus "$work/corpus" --out "$root/src/clipvil/weights"
  "$cv" ship-tower --checkpoint "$work/classify_$fam/checkpoints/last.pt" --name "imagenet-$fam-tiny" \
    --recipe "classify/web_${fam}_tiny.yaml" --corpus "$work/corpus" --out "$root/src/clipvil/weights"
done
