#!/usr/bin/env bash
# Captioning on the embedded synthetic world (configs/caption/transformer_synthetic.yaml): the trivial baseline
# (the most frequent training caption for every image), then XE, then SCST continuing the same run, each scored
# on the 100 held-out Karpathy-test images (BLEU, ROUGE-L, CIDEr; METEOR skipped for time).
#   bash scripts/caption_embedded.sh [RUN_ROOT]        (default runs/caption_embedded; a few CPU minutes)
#   ENCODER=clipvil-rn-tiny bash scripts/caption_embedded.sh   (a random tiny tower: extraction ~10x cheaper)
# Writes RUN_ROOT/{baseline,xe,scst}/metrics.json and prints a summary.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
R="${1:-runs/caption_embedded}"
ENCODER="${ENCODER:-RN50}"                       # random weights (no --weights file)
XE_EPOCHS="${XE_EPOCHS:-15}"                     # XE epochs, then SCST to EPOCHS (the recipe: 15, 20)
EPOCHS="${EPOCHS:-20}"
CFG=configs/caption/transformer_synthetic.yaml
CLI=.venv/bin/clipvil
SET=("task.karpathy_file=$R/world/captions/dataset_coco.json" "task.features=$R/features/$ENCODER"
     "task.feature_encoder=$ENCODER" "out_dir=$R/run"
     "phases=[{name: xe, start_epoch: 0}, {name: scst, start_epoch: $XE_EPOCHS, optim: {name: adam, lr: 5.0e-5}, schedule: {name: step}}]")
REFS="$R/world/captions/captions_test2015.json"   # the world's Karpathy test images are its test2015 images

"$CLI" make-data --out "$R/world" --images 1000 --seed 0
"$CLI" extract --encoder "$ENCODER" --preset views --images "$R/world/coco" --out "$R/features/$ENCODER" --no-progress

# 1. trivial baseline: the most frequent training caption, for every test image
mkdir -p "$R/baseline"
.venv/bin/python - "$R" <<'EOF'
import json, sys
from collections import Counter
root = sys.argv[1]
images = json.load(open(f"{root}/world/captions/dataset_coco.json"))["images"]
top, n = Counter(s["raw"] for im in images if im["split"] in ("train", "restval") for s in im["sentences"]).most_common(1)[0]
rows = [{"image_id": im["cocoid"], "caption": top} for im in images if im["split"] == "test"]
json.dump(rows, open(f"{root}/baseline/caption_results.json", "w"))
print(f"baseline caption ({n} of the training captions): {top!r}", file=sys.stderr)
EOF
"$CLI" score caption "$R/baseline/caption_results.json" "$REFS" --no-meteor > "$R/baseline/metrics.json"

# 2. XE: the first XE_EPOCHS epochs (the run stops at the phase switch), scored on test
"$CLI" train "$CFG" "${SET[@]}" train.epochs="$XE_EPOCHS"
cp "$R/run/checkpoints/last.pt" "$R/xe.pt"
"$CLI" evaluate "$CFG" "${SET[@]}" --checkpoint "$R/xe.pt" --split test --out "$R/xe"

# 3. SCST: the same run continued to epoch EPOCHS (resumes at the switch), scored on test
"$CLI" train "$CFG" "${SET[@]}" train.epochs="$EPOCHS"
"$CLI" evaluate "$CFG" "${SET[@]}" --checkpoint "$R/run/checkpoints/last.pt" --split test --out "$R/scst"

.venv/bin/python - "$R" <<'EOF'
import json, sys
root = sys.argv[1]
for name in ("baseline", "xe", "scst"):
    m = json.load(open(f"{root}/{name}/metrics.json"))
    print(f"{name:>8}: CIDEr {m['CIDEr']:.3f}  BLEU-4 {m['Bleu_4']:.3f}  ROUGE-L {m['ROUGE_L']:.3f}")
EOF
