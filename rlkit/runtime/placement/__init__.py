"""Where the run's processes go and how many threads or GPUs each gets.

threads      the CPU placement: thread counts of rollout workers and trainer ranks
gpus         the GPU placement: each actor's GPU share, the hybrid engine's bundles
reference    where the reference model (KL) runs and in which dtype
core_lease   an asynchronous CPU trainer borrowing idle rollout cores
hybrid       rollout and training taking turns on shared GPUs
cluster      Ray set-up and starting the rollout workers
rank_group   starting and stopping a group of rank actors (one torch.distributed group)
"""
