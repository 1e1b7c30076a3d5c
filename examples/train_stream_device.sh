#!/usr/bin/env bash
# One call of a lent GPU machine (the `run` tool: at most 10 minutes a command): train the
# stream model of examples/train_default_model.sh's "Stream stage" on the GPU, with the
# machine's CPU cores rendering the stream, for at most BUDGET seconds, resuming from
# RUN/model if a previous call left it there, then copy the run's model directory to $OUT.
#
#   run(command="bash examples/train_stream_device.sh", carry=["runs/stream-gpu/model"])
#   run(command="ARCH=slitnet2 HEAD=pdf RUN=runs/stream-pdf bash examples/train_stream_device.sh", carry=["runs/stream-pdf/model"])
#
# Each call regenerates the validation sample (seed 200, the same bytes every time) rather
# than carrying its 1.4 GB. The checkpoint (weights, optimiser and RNG states, steps done;
# about 14 MB) is written at every validation, so a call stopped by the budget loses at most
# VAL_EVERY steps; the next call carries RUN/model back and goes on with --resume (the same
# weights as an uninterrupted run: docs/bayes.md, "The training stream").
set -euo pipefail
budget=${BUDGET:-500}
run=${RUN:-runs/stream-gpu}
workers=${WORKERS:-$(( $(nproc) - 2 ))}
steps_pre=${PRETRAIN_STEPS:-14000}
steps_fine=${FINETUNE_STEPS:-6000}
val_every=${VAL_EVERY:-250}
# The network (docs/bayes.md, "Architectures") and its head: gaussian, or pdf ("The p(z) head").
arch=${ARCH:-slitnet}
head=${HEAD:-gaussian}
n_val=${N_VAL:-3000}
out=${OUT:-$run/out}
mkdir -p "$run" "$out"
start=$(date +%s)

if [ ! -f "$run/val.fits" ]; then
  slitcli simulate -n "$n_val" --seed 200 -j "$workers" -q -o "$run/val.fits"
fi
printf 'train:\n  architecture: %s\n  batch_size: 128\n  pretrain_steps: %s\n  finetune_steps: %s\n  val_every: %s\n  patience: 8\nmodel:\n  head: %s\nstream:\n  p_neighbour: 0.3\n  p_sky_residual: 0.3\n  p_wavelength_shift: 0.3\n  p_cosmic_rays: 0.3\n  p_dust: 0.5\n  p_lines: 0.5\n' \
  "$arch" "$steps_pre" "$steps_fine" "$val_every" "$head" > "$run/stream.yaml"
resume=()
[ -f "$run/model/checkpoint.pt" ] && resume=(--resume)
left=$(( budget - ($(date +%s) - start) ))
status=0
timeout -s TERM "$left" slitcli train --stream --config "$run/stream.yaml" --workers "$workers" --device "${DEVICE:-auto}" \
  --val "$run/val.fits" -o "$run/model" "${resume[@]}" -v 2> "$run/train.log" || status=$?
cp -r "$run/model" "$out/" 2>/dev/null || true
cp "$run/train.log" "$out/"
grep -E "val sNMAD [0-9]" "$run/train.log" | tail -3 || true
# 124: stopped by the budget (resume with the next call); 0: the run finished.
echo "train exit status $status after $(( $(date +%s) - start )) s"
