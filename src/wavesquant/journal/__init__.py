"""The trade journal: every order and fill in one SQLite file, synced from the event log."""

from wavesquant.journal.store import JournalError, JournalFill, JournalOrder, StrategyPnl, TradeJournal
from wavesquant.journal.sync import SyncStats, sync_journal

__all__ = ["JournalError", "JournalFill", "JournalOrder", "StrategyPnl", "SyncStats", "TradeJournal", "sync_journal"]
