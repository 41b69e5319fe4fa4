"""Drives the web console in Debian's headless Chromium, as an operator would click through it.

Usage: console_browser.py HTTP_ADDR KAFKA_ADDR SCREENSHOT_DIR

Creates a topic through the form, produces records with kafka-python, browses them page by page, consumes
them in a group and sees its lag, resets its offsets (preview, then apply), deletes the topic. Saves a
screenshot of each main page to SCREENSHOT_DIR. Prints one JSON line with what it saw.
"""

import json
import os
import sys
import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait

HTTP, KAFKA, SHOTS = sys.argv[1], sys.argv[2], sys.argv[3]
BASE = f"http://{HTTP}"
TOPIC = "browser-orders"
GROUP = "browser-group"
TIMEOUT_S = 30

os.makedirs(SHOTS, exist_ok=True)
# Selenium must not look for a driver on the network: Debian's chromedriver matches Debian's chromium.
os.environ["SE_OFFLINE"] = "true"
options = webdriver.ChromeOptions()
options.binary_location = os.environ.get("STRATA_CHROMIUM", "/usr/bin/chromium")
for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,1000"):
    options.add_argument(flag)
driver = webdriver.Chrome(
    service=Service(executable_path=os.environ.get("STRATA_CHROMEDRIVER", "/usr/bin/chromedriver")),
    options=options,
)
wait = WebDriverWait(driver, TIMEOUT_S)
seen = {}


def shot(name):
    # The whole page: grow the window to the document's height first.
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, max(800, min(height + 40, 4000)))
    driver.save_screenshot(os.path.join(SHOTS, f"{name}.png"))
    driver.set_window_size(1280, 1000)


def text_of(css):
    return driver.find_element(By.CSS_SELECTOR, css).text


def until(condition, what):
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


try:
    # Overview: brokers, quorum, charts drawn by the script.
    driver.get(BASE + "/")
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "svg.chart line")))
    seen["overview_title"] = driver.title
    seen["quorum_leader"] = "Leader: " in text_of("main")

    # Create a topic through the form.
    driver.get(BASE + "/topics")
    form = driver.find_element(By.CSS_SELECTOR, "form[action='/topics']")
    form.find_element(By.NAME, "name").send_keys(TOPIC)
    form.find_element(By.NAME, "partitions").send_keys("3")
    form.find_element(By.NAME, "configs").send_keys("retention.ms=86400000")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait.until(ec.title_contains(f"Topic {TOPIC}"))
    seen["created_partitions"] = len(driver.find_elements(By.CSS_SELECTOR, "main section:first-of-type tbody tr"))
    seen["created_config"] = "retention.ms" in text_of("main")
    shot("topic")

    # Records, with kafka-python: 30 on partition 0, one with a header, one binary.
    producer = KafkaProducer(bootstrap_servers=KAFKA)
    for i in range(28):
        producer.send(TOPIC, key=f"key-{i}".encode(), value=f"order {i} <b>not bold</b>".encode(), partition=0)
    producer.send(TOPIC, key=b"with-header", value=b"hello", headers=[("trace", b"abc-123")], partition=0)
    producer.send(TOPIC, key=b"binary", value=bytes([0, 1, 2, 255]), partition=0)
    producer.flush()
    producer.close()

    # The message browser: first page, then the next one.
    driver.get(BASE + f"/topics/{TOPIC}/messages?partition=0&limit=20")
    rows = driver.find_elements(By.CSS_SELECTOR, "table tbody tr")
    seen["page1_rows"] = len(rows)
    seen["page1_first"] = rows[0].find_elements(By.TAG_NAME, "td")[3].text
    seen["markup_inert"] = len(driver.find_elements(By.CSS_SELECTOR, "table tbody b")) == 0
    shot("messages")
    driver.find_element(By.CSS_SELECTOR, "a[rel=next]").click()
    wait.until(ec.url_contains("offset=20"))
    rows = driver.find_elements(By.CSS_SELECTOR, "table tbody tr")
    seen["page2_offsets"] = [int(r.find_elements(By.TAG_NAME, "td")[0].text) for r in rows]
    seen["page2_header"] = "trace" in text_of("table")
    seen["page2_hex"] = "000102ff" in text_of("table")

    # A group reads everything, commits, leaves; then 10 more records make a lag of 10.
    consumer = KafkaConsumer(
        bootstrap_servers=KAFKA, group_id=GROUP, auto_offset_reset="earliest", enable_auto_commit=False
    )
    consumer.subscribe([TOPIC])
    got = 0
    deadline = time.monotonic() + TIMEOUT_S
    while got < 30 and time.monotonic() < deadline:
        got += sum(len(batch) for batch in consumer.poll(timeout_ms=500).values())
    consumer.commit()
    consumer.close()
    seen["consumed"] = got
    producer = KafkaProducer(bootstrap_servers=KAFKA)
    for i in range(10):
        producer.send(TOPIC, value=f"late {i}".encode(), partition=1)
    producer.flush()
    producer.close()

    driver.get(BASE + "/groups")
    until(lambda: GROUP in text_of("main"), "the group in the list")
    shot("groups")

    def lag():
        driver.get(BASE + f"/groups/{GROUP}")
        return int(text_of("#total-lag"))

    seen["lag_before"] = until(lambda: lag() == 10 and 10, "a lag of 10")
    shot("group")

    # Reset to earliest: the preview changes nothing; apply commits.
    Select(driver.find_element(By.NAME, "topic")).select_by_value(TOPIC)
    Select(driver.find_element(By.NAME, "to")).select_by_value("earliest")
    driver.find_element(By.XPATH, "//button[text()='Preview']").click()
    wait.until(ec.title_contains("Reset offsets"))
    seen["preview_notice"] = "Dry run" in text_of("main")
    seen["preview_rows"] = len(driver.find_elements(By.CSS_SELECTOR, "#plan tbody tr"))
    shot("reset-preview")
    seen["lag_after_preview"] = lag()
    driver.back()
    driver.find_element(By.XPATH, "//button[text()='Apply']").click()
    # The preview page has a notice too: wait for the applied page's, not for any (the preview's would go
    # stale under the check as the browser moves on).
    seen["applied"] = wait.until(
        ec.text_to_be_present_in_element((By.CSS_SELECTOR, "p.notice"), "Committed the new offsets")
    )
    seen["lag_after_apply"] = lag()

    # Delete the topic, confirming with its name.
    driver.get(BASE + f"/topics/{TOPIC}/delete")
    driver.find_element(By.NAME, "confirm").send_keys(TOPIC)
    driver.find_element(By.CSS_SELECTOR, "button.danger").click()
    wait.until(ec.title_contains("Topic deleted"))
    driver.get(BASE + "/topics")
    seen["deleted"] = TOPIC not in text_of("main")
    driver.get(BASE + "/")
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "svg.chart line")))
    shot("overview")
finally:
    driver.quit()

print(json.dumps(seen))
