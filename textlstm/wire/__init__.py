"""What travels between producers, the broker and workers: the message schema and its
validation, ids and limits, queue names, the dead-letter record, and the one description of how
kombu lays queues out in Redis.

Nothing here touches SQL or torch: a producer application, the worker's consumer and the
operations commands all read the same definitions.
"""
