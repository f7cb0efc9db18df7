"""The bank account example: an event-sourced account, its repository and projections."""
