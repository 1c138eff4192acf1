"""Processes the lab starts and stops: process groups, the guard, the ledger, locks,
signals, and the check of the app in a supervised child."""
