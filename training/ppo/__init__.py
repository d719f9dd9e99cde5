"""Arbiter's PPO trainer: `config` (PPOConfig, PPOResult), `core` (the pure math), `modeling`
(forward passes and model setup) and `trainer` (PPOTrainer, train_ppo, train_ppo_run).

Nothing is imported here, so that importing `training.ppo.config` loads only the config.
"""
