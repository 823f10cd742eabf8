"""LLM-serving policies: which requests run in the next iteration (vLLM-FCFS, round-robin, Andes)."""
