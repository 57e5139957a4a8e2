import torch

# the tests' networks are small: one thread is as fast, and a machine busy with other work does not stall them
torch.set_num_threads(1)


def pytest_collection_modifyitems(items):
    """The tests marked slow (half a minute or more) first, handed out two at a time (pyproject's --maxschedchunk 1):
    the workers share them and the short tests fill in around them, where a slow test started last would run alone
    at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
