"""Small hardware layer.  Every driver is handed its bus or pin objects (nothing is touched at
import), and every wait on hardware has a deadline.  Boards (boards/) wire these together."""
