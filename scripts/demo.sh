#!/usr/bin/env bash
# The main job, as one declared pipeline (examples/squad-cpu.yaml): raw SQuAD dev -> split by article -> BM25 negatives
# -> stage-1 model -> dense negatives -> stage-2 model (kept only if better on dev), with BM25, base-model and hybrid
# baselines; it ends with the stage table. Re-running skips what is fresh.
# Environment: DATA (raw SQuAD json; default ../shared/data/squad-v1.1/dev-v1.1.json), RUN (run folder),
# QUERIES (training queries per training stage; the CPU default finishes in under 20 minutes on 2 cores).
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

args=(examples/squad-cpu.yaml --set "dataset=$DATA" --set "output=$RUN"
      --set "stages.train_1.max_queries=$QUERIES" --set "stages.dense.train.max_queries=$QUERIES")
rtune run "${args[@]}"
echo "report: $RUN/report.html ($RUN/report.md, $RUN/results.csv)"
