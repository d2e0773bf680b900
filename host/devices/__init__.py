"""What the host keeps per device: sessions, clock estimates, event-sourced configuration,
WITNESS records, and the frames it sends."""
