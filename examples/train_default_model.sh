#!/usr/bin/env bash
# Train the default model (models/slitnet-csst-default) on the embedded default data, from
# the training stream: no training files. About 1 h of training on 2 CPU cores, plus the
# samples, calibration and tests (about 20 min more). Usage: train_default_model.sh [DIR]
#
# The card (model.json, "training") records exactly what was run. `train --resume`
# continues an interrupted stage with the same weights.
set -euo pipefail
out=${1:-default-model-run}
mkdir -p "$out" && cd "$out"

# Held-out samples, each its own seed: validation (picks the best round), calibration (the
# temperature and PIT map; the hybrid's scales), tests (only for evaluate).
slitcli simulate -n 1000 --seed 200 -j 2 -q -o val.fits
slitcli simulate -n 12000 --seed 2204 -j 2 -q -o cal12k.fits
slitcli simulate -n 3000 --seed 300 -j 2 -q -o test.fits
slitcli simulate -n 12000 --seed 301 -j 2 -q -o test12k.fits

# The stream's mix of nuisances and SED variation (slitcli.nn.stream.StreamConfig).
mix='  p_neighbour: 0.3
  p_sky_residual: 0.3
  p_wavelength_shift: 0.3
  p_cosmic_rays: 0.3
  p_dust: 0.5
  p_lines: 0.5'

# Stage 1: slitnet with a p(z) head, 12,000 steps of 64 from the default population
# (2,696 s on 2 CPU cores with one rendering worker).
cat > stage1.yaml <<EOF
train:
  batch_size: 64
  pretrain_steps: 8000
  finetune_steps: 4000
  val_every: 500
  patience: 8
  label_sigma: 2.0
model:
  head: pdf
stream:
$mix
EOF
slitcli train --stream --config stage1.yaml --workers 1 --val val.fits -o stage1

# Stage 2: 3,200 more steps (lr 2e-4) on a population whose redshifts are half flat over
# 0.02-1.7 and whose i magnitudes are half uniform over 17-23.5 whatever the redshift, so
# that the network stops reading "bright means near" (docs/bayes.md, "Breaking the
# luminosity prior"); 738 s. Another stream seed: new cutouts.
cat > stage2.yaml <<EOF
train:
  batch_size: 64
  pretrain_steps: 0
  finetune_steps: 3200
  finetune_lr: 0.0002
  val_every: 400
  patience: 8
  label_sigma: 2.0
  seed: 1
model:
  head: pdf
stream:
  seed: 1
$mix
  population:
    nz_flat_fraction: 0.5
    mag_free_fraction: 0.5
    z_max: 1.7
EOF
slitcli train --stream --config stage2.yaml --workers 1 --init-from stage1 --val val.fits -o stage2

# Calibration: logit temperature x SNR power, then the PIT map by SNR_GI bin (12k sources);
# then the template route's keys per SNR_GI bin (docs/template.md; they do not depend on
# the network; about 10 min) and the hybrid route's scales per SNR_GI bin, Z's temperatures
# and out-of-distribution thresholds (12k sources, about 15 min); then both routes' field
# pairs (and the hybrid's CNN prior width) on the cutouts of two separate fields together.
slitcli calibrate cal12k.fits -m stage2 -o slitnet-csst-default
slitcli calibrate cal12k.fits -m slitnet-csst-default --template --in-place
slitcli calibrate cal12k.fits -m slitnet-csst-default --hybrid --max-widen-ood 1 --in-place
for f in "8192 2210" "9216x9232 2212"; do
  set -- $f
  slitcli simulate --field --size $1 --seed $2 -q -o field$2
  slitcli cutout field$2/exposure_*.fits --catalog field$2/catalog.fits --direct field$2/direct.fits -q -o field$2.fits
done
slitcli calibrate field2210.fits field2212.fits -m slitnet-csst-default --template --in-place
slitcli calibrate field2210.fits field2212.fits -m slitnet-csst-default --hybrid --in-place

for t in test test12k; do
  slitcli predict $t.fits -m slitnet-csst-default -o z_$t.fits --pdf
  slitcli evaluate z_$t.fits --truth $t.fits -o report_$t
done
