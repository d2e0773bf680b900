"""The relay node (`becomingone relay`): forwards local devices' frames to a remote coordinator
and its replies back, buffering while the uplink is lost. relay/service.py is the node,
relay/uplink.py the per-device UDP sockets, relay/buffer.py the bounded store, relay/frames.py
what a relay reads of a frame (the clear header)."""
