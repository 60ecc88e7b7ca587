#!/usr/bin/env bash
# The main job: raw SQuAD dev -> split by article -> BM25 negatives -> stage-1 bi-encoder -> BM25 vs base vs fine-tuned.
# Environment: DATA (raw SQuAD json; default ../shared/data/squad-v1.1/dev-v1.1.json), RUN (output folder),
# QUERIES (training-query budget; the CPU default finishes in about 10 minutes on 2 cores).
set -euo pipefail
DATA=${DATA:-../shared/data/squad-v1.1/dev-v1.1.json}
RUN=${RUN:-runs/demo}
QUERIES=${QUERIES:-1000}
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}

if [ ! -f "$DATA" ]; then
  DATA=runs/data/dev-v1.1.json
  if [ ! -f "$DATA" ]; then
    echo "no local SQuAD copy: downloading the public SQuAD v1.1 dev file to $DATA"
    mkdir -p runs/data
    python -c "import urllib.request, sys; urllib.request.urlretrieve(sys.argv[1], sys.argv[2] + '.part')" \
      https://rajpurkar.github.io/SQuAD-explorer/dataset/dev-v1.1.json "$DATA"
    mv "$DATA.part" "$DATA"
  fi
fi

step() { echo; echo "== $* =="; }
step "prepare: $DATA -> $RUN/data (split by article: 70/10/20)"
rtune prepare "$DATA" --output "$RUN/data" --split-by group --overwrite
step "mine: 15 BM25 negatives per train query from ranks 2-200"
rtune mine --dataset "$RUN/data" --output "$RUN/bm25-negatives" --range 2-200 --negatives 15 --overwrite
step "train: stage 1 from all-MiniLM-L6-v2 on $QUERIES train queries (1 positive + 1 BM25 negative + in-batch)"
rtune train --groups "$RUN/bm25-negatives" --dataset "$RUN/data" --output "$RUN/stage1" \
  --max-queries "$QUERIES" --group-size 2 --batch-size 32 --max-passage-length 128 --learning-rate 5e-5 --overwrite
step "eval on the test split"
rtune eval --dataset "$RUN/data" --model bm25 --output "$RUN/eval/bm25" --overwrite
rtune eval --dataset "$RUN/data" --model sentence-transformers/all-MiniLM-L6-v2 --output "$RUN/eval/base" --overwrite
rtune eval --dataset "$RUN/data" --model "$RUN/stage1" --output "$RUN/eval/stage1" --overwrite
step "BM25 vs base vs fine-tuned (test split)"
rtune compare "$RUN/eval/bm25" "$RUN/eval/base" "$RUN/eval/stage1"
