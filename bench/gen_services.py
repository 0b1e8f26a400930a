"""Write a synthetic Compose file of N services (default 500) shaped like real stacks to time `config -q`."""

from __future__ import annotations

import sys


def generate(count: int) -> str:
    lines = [
        "name: bench",
        "x-common: &common",
        "  restart: unless-stopped",
        "  labels:",
        "    com.example.team: bench",
        "services:",
    ]
    for i in range(count):
        lines += [
            f"  svc{i}:",
            "    <<: *common",
            f"    image: registry.example:5000/bench/svc{i}:1.{i}",
            f"    command: python -m app --port {8000 + i}",
            "    environment:",
            f"      - SERVICE_INDEX={i}",
            "      - LOG_LEVEL=${LOG_LEVEL:-info}",
            "    ports:",
            f'      - "127.0.0.1:{10000 + i}:{8000 + i}"',
            "    volumes:",
            f"      - data{i % 10}:/var/lib/app",
            "      - ./conf:/etc/app:ro",
            "    healthcheck:",
            f'      test: ["CMD", "curl", "-f", "http://localhost:{8000 + i}/health"]',
            "      interval: 30s",
            "      timeout: 5s",
            "      retries: 3",
            "    networks: [front, back]",
        ]
        if i:
            lines += ["    depends_on:", f"      svc{i - 1}:", "        condition: service_started"]
    lines += ["networks:", "  front: {}", "  back: {}", "volumes:"]
    lines += [f"  data{i}: {{}}" for i in range(10)]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(generate(int(sys.argv[1]) if len(sys.argv) > 1 else 500))
