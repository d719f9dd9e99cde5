"""Training runs (reward model, PPO, DPO) are added here on top of dataset snapshots."""
