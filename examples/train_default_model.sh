#!/usr/bin/env bash
# Train the default model on the embedded default data (CPU; about 3.5 h on 2 cores).
#
# This is the recipe of models/slitnet-csst-default, with one difference. The shipped
# model's first stage (r2) was stopped by hand after 23 pre-training epochs of a 40-epoch
# schedule, and its best epoch (18) was exported without fine-tuning; that state is not a
# CLI command. Here the first stage is a complete, shorter run. Expect similar but not
# identical numbers; the model card (model.json, "training") records exactly what was run.
set -euo pipefail
out=${1:-default-model-run}
mkdir -p "$out" && cd "$out"

# Samples: training (20k + 40k + 30k), validation (3k, picks epochs and fits the temperature),
# test (3k, only for evaluate). Different seeds, so no source is shared.
slitcli simulate -n 20000 --seed 100 -j 2 -q -o train.fits
slitcli simulate -n 40000 --seed 101 -j 2 -q -o train2.fits
slitcli simulate -n 30000 --seed 102 -j 2 -q -o train3.fits
slitcli simulate -n 3000 --seed 200 -j 2 -q -o val.fits
slitcli simulate -n 3000 --seed 300 -j 2 -q -o test.fits

# Stage 1 (r2): 9.3k training sources with SNR_GI >= 1.
slitcli train train.fits --val val.fits -o stage1 --batch-size 32 --pretrain-epochs 20 --finetune-epochs 1
# Stage 2 (r3): warm start on all 28k training sources, lower learning rate.
cat > stage2.yaml <<'YAML'
train:
  batch_size: 32
  lr: 0.0005
  finetune_lr: 0.0003
  pretrain_epochs: 12
  finetune_epochs: 4
  patience: 4
YAML
slitcli train train.fits train2.fits --val val.fits --init-from stage1 --config stage2.yaml -o stage2
# Stage 3 (r4): warm start again, lower learning rate; kept only if its validation sigma_NMAD is better.
cat > stage3.yaml <<'YAML'
train:
  batch_size: 32
  lr: 0.0003
  finetune_lr: 0.00015
  pretrain_epochs: 8
  finetune_epochs: 4
  patience: 4
YAML
slitcli train train.fits train2.fits --val val.fits --init-from stage2 --config stage3.yaml -o stage3
# Stage 4 (r5): once more, lower still.
cat > stage4.yaml <<'YAML'
train:
  batch_size: 32
  lr: 0.0002
  finetune_lr: 0.0001
  pretrain_epochs: 6
  finetune_epochs: 4
  patience: 4
YAML
slitcli train train.fits train2.fits --val val.fits --init-from stage3 --config stage4.yaml -o stage4
# Stage 5 (r6): warm start on all three training files.
cat > stage5.yaml <<'YAML'
train:
  batch_size: 32
  lr: 0.00015
  finetune_lr: 0.00008
  pretrain_epochs: 6
  finetune_epochs: 4
  patience: 4
YAML
slitcli train train.fits train2.fits train3.fits --val val.fits --init-from stage4 --config stage5.yaml -o stage5
slitcli calibrate val.fits -m stage5 -o slitnet-csst-default
slitcli predict test.fits -m slitnet-csst-default -o z_test.ecsv
slitcli evaluate z_test.ecsv --truth test.fits -o report
