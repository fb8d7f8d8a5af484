"""Job queues behind one interface: ``base`` declares it, ``sqs_producer`` / ``kafka_producer`` send,
``memory`` is an in-memory fake of both sides for unit tests. Consumers live with the worker agent.
"""

from runtime.queues.base import (
    JobQueueConsumer,
    JobQueueProducer,
    MessageFormatError,
    QueueDepth,
    QueueError,
    QueueMessage,
    QueueUnavailableError,
    ReceivedJob,
)

__all__ = ["JobQueueConsumer", "JobQueueProducer", "MessageFormatError", "QueueDepth", "QueueError", "QueueMessage",
           "QueueUnavailableError", "ReceivedJob"]
