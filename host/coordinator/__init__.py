"""The coordinator: the device side of a cell run by one processing thread (service.py), its typed
inbox (inbox.py), the routing of admitted frames (frames.py), operator actions and reads
(operator.py), the narrow face other threads get (view.py) and the control socket (control.py)."""
