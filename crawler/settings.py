"""Scrapy settings of the Lookalike crawler; every LOOKALIKE_* one is ours.

Politeness is on by default (robots.txt, AutoThrottle, two requests at a time per host). With
scrapy-redis these limits apply per worker process: N workers may send N times as many
requests to one host, so divide CONCURRENT_REQUESTS_PER_DOMAIN by the number of workers.
"""

BOT_NAME = "lookalike"
SPIDER_MODULES = ["crawler.spiders"]
NEWSPIDER_MODULE = "crawler.spiders"

# Who we are and how to reach whoever runs the crawl: set LOOKALIKE_CONTACT_URL to your page;
# the User-Agent is made from it (unless USER_AGENT itself is set).
LOOKALIKE_CONTACT_URL = "https://github.com/lookalike/lookalike"
LOOKALIKE_USER_AGENT = "LookalikeBot/0.1 (+{contact})"
USER_AGENT = LOOKALIKE_USER_AGENT.format(contact=LOOKALIKE_CONTACT_URL)

# Scope and caps, overridden by `lookalike crawl --depth/--max-pages` or spider arguments.
LOOKALIKE_DEPTH = 3  # links followed from a seed page; images on the last pages still count
LOOKALIKE_MAX_PAGES = 10_000  # pages scheduled per crawl (0: no cap)
LOOKALIKE_MAX_PAGE_BYTES = 10 * 1024 * 1024
LOOKALIKE_MAX_IMAGE_BYTES = 20 * 1024 * 1024
LOOKALIKE_MAX_PIXELS = 50_000_000
# Read from one page, in its order; those past a cap are counted in the crawl's log and stats.
LOOKALIKE_MAX_LINKS_PER_PAGE = 1000
LOOKALIKE_MAX_IMAGES_PER_PAGE = 1000
LOOKALIKE_MAX_HEADER_BYTES = 256 * 1024  # a response's status line and headers (Chromium's cap)
LOOKALIKE_THUMBNAILS = True  # keep a ≤160 px WebP of each new image in PostgreSQL

# Writing to PostgreSQL: batches, off the reactor thread, with back-pressure.
LOOKALIKE_BATCH_SIZE = 200
LOOKALIKE_FLUSH_SECONDS = 1.0
LOOKALIKE_MAX_BUFFERED_ITEMS = 2000
LOOKALIKE_MAX_BUFFERED_BYTES = 128 * 1024 * 1024
LOOKALIKE_FINGERPRINT_WORKERS = 0  # processes; 0: one per core
LOOKALIKE_DB_RETRY_SECONDS = 600  # give up (crawl stays resumable) after this long an outage
# A write hung this long (a lock someone holds, a stuck server) is cancelled and retried like
# an outage, instead of stalling the crawl without a word.
LOOKALIKE_DB_STATEMENT_SECONDS = 60
LOOKALIKE_PROGRESS_SECONDS = 10  # a progress line in the log
LOOKALIKE_PROGRESS_LINE = False  # a live line on stderr; `lookalike crawl` sets it on a terminal

# With scrapy-redis: a worker that sees no progress on pending requests for this long re-queues
# them (they belonged to a worker that died).
LOOKALIKE_STALLED_SECONDS = 60
# How long a stopped worker still counts as alive: a worker starting after that finds itself
# alone and rebuilds the shared queue from the database.
LOOKALIKE_WORKER_LEASE_SECONDS = 10

ROBOTSTXT_OBEY = True
AUTOTHROTTLE_ENABLED = True
# Scrapy's default first delay is 5 s per host, which makes a small first crawl take minutes.
# AutoThrottle raises the delay as soon as a site answers slowly (delay ≈ latency / target
# concurrency) and Crawl-delay in robots.txt still wins, so starting at 0.5 s stays polite.
AUTOTHROTTLE_START_DELAY = 0.5
AUTOTHROTTLE_TARGET_CONCURRENCY = 2.0
CONCURRENT_REQUESTS = 32
CONCURRENT_REQUESTS_PER_DOMAIN = 2
# Stock Scrapy 2.19 marks a request as transferring only when the coroutine it scheduled
# runs, so with no delay (or a reactor paused for longer than the delay) it starts more than
# CONCURRENT_REQUESTS_PER_DOMAIN at once; this downloader counts a request when it is taken.
DOWNLOADER = "crawler.downloader.SlotCountingDownloader"
LOOKALIKE_MIN_DOWNLOAD_DELAY = 0.001
DOWNLOAD_DELAY = LOOKALIKE_MIN_DOWNLOAD_DELAY
# Per response, Scrapy starts this many asyncio tasks to hand its output to the pipeline; a page
# gives one item and a few requests, and the default 100 made task creation a fifth of the
# reactor's time.
CONCURRENT_ITEMS = 8
DOWNLOAD_TIMEOUT = 30
DOWNLOAD_MAXSIZE = LOOKALIKE_MAX_IMAGE_BYTES  # robots.txt; pages and images carry their own
DOWNLOAD_WARNSIZE = 0
REDIRECT_MAX_TIMES = 10
RETRY_TIMES = 1
COOKIES_ENABLED = False
TELNETCONSOLE_ENABLED = False
LOG_LEVEL = "INFO"
LOGSTATS_INTERVAL = 0  # our progress line replaces Scrapy's

DOWNLOAD_HANDLERS = {
    "http": "crawler.download.CappedHeadersDownloadHandler",
    "https": "crawler.download.CappedHeadersDownloadHandler",
}
DOWNLOADER_MIDDLEWARES = {
    # Checked first, so nothing (not even robots.txt) is fetched from a refused address.
    "crawler.safety.PublicAddressMiddleware": 50,
    "scrapy.downloadermiddlewares.robotstxt.RobotsTxtMiddleware": None,
    "crawler.robots.StrictRobotsTxtMiddleware": 100,
    "scrapy.downloadermiddlewares.offsite.OffsiteMiddleware": None,  # the spider scopes links
}
SPIDER_MIDDLEWARES = {
    "scrapy.spidermiddlewares.depth.DepthMiddleware": None,  # it counts image requests too
}
ITEM_PIPELINES = {"crawler.pipelines.BatchWriterPipeline": 300}
EXTENSIONS = {
    "crawler.progress.ProgressLog": 500,
    "scrapy.extensions.remote_control.RemoteControl": None,  # no open port on a crawler box
}
