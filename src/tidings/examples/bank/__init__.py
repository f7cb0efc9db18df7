"""The bank account example: an event-sourced account, its repository and projections, and its
events relayed to a bus (``notices``)."""
