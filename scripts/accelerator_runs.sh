#!/usr/bin/env bash
# The accelerator runs of a session in one go (device time is scarce): the accelerator check,
# the step loop's unroll under XLA's command buffers, PacGAN's own harness on the grid and ring,
# flow matching on MNIST, and the Sinkhorn push-forward on the grid. Each part has its own time
# limit and the next part runs whatever happened; everything lands in $OUT/runs.tgz (packed again
# after each part), the MNIST flow-matching parameters beside it.
#
#   OUT=/tmp/out DEEPFOUND_DATA=<dir of mnist.npz> bash scripts/accelerator_runs.sh [part ...]
#
# Parts (default: all, in this order): accelerator steps pacgan fm_mnist sinkhorn_grid;
# on request: scaling (the sweep against its number of runs, then the MLP, data-parallel and
# checkpoint checks), pacgan_long (PacGAN2 on the grid at 4 times the steps), density_mnist (the
# spline flow on MNIST, configs/density_mnist.py: its validation curve, as far as 100 s go).
set -u
OUT=${OUT:?set OUT to the output folder}
W=$OUT/w
mkdir -p "$W"
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}. PYTHONUNBUFFERED=1
pack() { tar -czf "$OUT/runs.tgz" -C "$W" --exclude=params.npz --exclude=checkpoints . ; }
part() {  # part <name> <seconds> <command...>
  local name=$1 limit=$2; shift 2
  local tic=$SECONDS
  echo "== $name (limit $limit s)"
  timeout --kill-after=10 "$limit" "$@" > "$W/$name.log" 2>&1
  echo "== $name: exit $? after $((SECONDS - tic)) s"
  tail -3 "$W/$name.log"
  pack
}
PARTS=${*:-accelerator steps pacgan fm_mnist sinkhorn_grid}
for name in $PARTS; do  # every name checked before any device time is spent
  case $name in
    accelerator|scaling|steps|pacgan|pacgan_long|fm_mnist|sinkhorn_grid|density_mnist) ;;
    *) echo "unknown part $name" >&2; exit 2 ;;
  esac
done
STEPS=(--checks=step_time --unrolls=1,8,32 --pages=256)
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$W/gpu.txt" 2>&1
for name in $PARTS; do
  case $name in
    accelerator) part accelerator 140 python scripts/accelerator_check.py --out="$W/accelerator" ;;
    scaling) part scaling 100 python scripts/accelerator_check.py \
               --checks=scaling,mlp,data_parallel,checkpoint --out="$W/scaling" ;;
    steps)
      commands=FUSION,CUBLAS,CUBLASLT,CUSTOM_CALL,CUDNN,WHILE,CONDITIONAL
      part steps_while 35 env XLA_FLAGS="--xla_gpu_enable_command_buffer=$commands \
--xla_gpu_graph_min_graph_size=1" python scripts/accelerator_check.py "${STEPS[@]}" \
        --out="$W/steps_while"
      part steps_off 45 env XLA_FLAGS="--xla_gpu_enable_command_buffer=" \
        python scripts/accelerator_check.py "${STEPS[@]}" --out="$W/steps_off" ;;
    pacgan)
      cases=grid_js_pack2_pacgan_full,grid_js_pack2_pacgan_ema_full,grid_js_pack2_ema_full
      part pacgan 180 python scripts/bench_gan.py --out="$W/pacgan" \
        --cases=$cases,grid_js_pacgan_full,ring_js_pacgan_full ;;
    pacgan_long) part pacgan_long 110 python scripts/bench_gan.py --steps_scale=4 \
                   --cases=grid_js_pack2_pacgan_full --out="$W/pacgan_long" ;;
    fm_mnist)
      part fm_mnist 140 python scripts/train.py --config=configs/flow_matching_mnist.py \
        --workdir="$W/fm_mnist"
      cp "$W/fm_mnist/params.npz" "$OUT/fm_mnist_params.npz" 2>/dev/null ;;
    density_mnist) part density_mnist 100 python scripts/train.py --config=configs/density_mnist.py \
                     --workdir="$W/density_mnist" ;;
    sinkhorn_grid) part sinkhorn_grid 80 python scripts/bench_generative.py --cases=sinkhorn_grid \
                     --steps_scale=0.5 --out="$W/sinkhorn" ;;
  esac
done
echo "== done after $SECONDS s"
