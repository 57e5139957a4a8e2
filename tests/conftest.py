import torch

# the tests' networks are small: one thread is as fast, and a machine busy with other work does not stall them
torch.set_num_threads(1)
