"""Producer/consumer across interpreters with interpool.Queue.

Workers take jobs from one queue and put results on another; `close()` tells them there is
no more work. Queues block without polling and can be passed to tasks like any argument.
"""

from interpool import InterpreterPoolExecutor, Queue, QueueClosed


def worker(jobs: Queue, results: Queue) -> int:
    handled = 0
    while True:
        try:
            n = jobs.get()
        except QueueClosed:  # closed and drained: no more work
            return handled
        results.put((n, sum(i * i for i in range(n))))
        handled += 1


if __name__ == "__main__":
    jobs, results = Queue(maxsize=100), Queue()
    with InterpreterPoolExecutor(2) as pool:
        workers = [pool.submit(worker, jobs, results) for _ in range(2)]
        for n in range(1, 501):
            jobs.put(n)
        jobs.close()
        handled = sum(w.result() for w in workers)
    answers = dict(results.get() for _ in range(handled))
    assert handled == 500 and answers[10] == 285
    print(f"{handled} jobs handled; sum of squares below 10 = {answers[10]}")
