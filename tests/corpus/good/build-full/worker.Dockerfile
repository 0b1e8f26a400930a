FROM python:3.12-slim
ARG GIT_SHA
LABEL org.opencontainers.image.revision=$GIT_SHA
