"""Tag simulators: realistic fleets, faults and ground truth."""
