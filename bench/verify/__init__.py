"""`python -m bench verify`: scenarios, hypothesis strategies, trajectories, the ideal, properties
P1-P6, the truth table, the approach x scenario x property matrix and its counterexamples."""
