"""The papermill runner's helpers (notebook execution itself is in test_notebooks.py)."""
from __future__ import annotations

import asyncio

import pytest

from medadv_lib.runner import _poll_reply_channels_periodically, course_notebooks, resolve_mode


def test_unbounded_channel_wait_polls_and_still_returns_a_late_message():
    zmq_asyncio = pytest.importorskip("zmq.asyncio")
    import zmq
    from jupyter_client.channels import AsyncZMQSocketChannel
    from jupyter_client.session import Session

    _poll_reply_channels_periodically()
    patched = AsyncZMQSocketChannel.get_msg
    _poll_reply_channels_periodically()                      # idempotent: not wrapped twice
    assert AsyncZMQSocketChannel.get_msg is patched and patched._medadv_polling

    async def scenario():
        ctx = zmq_asyncio.Context()
        a, b = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
        a.bind("inproc://medadv-runner-test")
        b.connect("inproc://medadv-runner-test")
        session = Session()
        channel = AsyncZMQSocketChannel(b, session)

        async def send_late():
            await asyncio.sleep(1.5)                         # later than one 1-second poll
            session.send(a, "execute_reply", {"status": "ok"})

        sender = asyncio.ensure_future(send_late())
        msg = await asyncio.wait_for(channel.get_msg(timeout=None), 10)
        await sender
        a.close(), b.close(), ctx.term()
        return msg

    msg = asyncio.run(scenario())
    assert msg["header"]["msg_type"] == "execute_reply" and msg["content"] == {"status": "ok"}


def test_course_notebooks_are_numbered_and_modes_resolve():
    names = [p.name for p in course_notebooks()]
    assert names == sorted(names) and all(n[:2].isdigit() for n in names)
    assert resolve_mode("fast") is True and resolve_mode("full") is False
    with pytest.raises(ValueError):
        resolve_mode("medium")
