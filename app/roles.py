"""Who may change things: one instructor and a class of viewers.

Three ways the app can be served, read from the environment and the address Streamlit binds to:

- **alone** (`make run`: 127.0.0.1, no `ADS_INSTRUCTOR_TOKEN`): one user on their own machine, every control.
- **class** (`ADS_INSTRUCTOR_TOKEN` set, `make serve`): every visitor is a viewer until they enter the token, in
  the sidebar or once through a link (`?token=...`, taken out of the address at once).
- **viewers only** (a network address and no token): nobody can change anything; the sidebar says how to become
  the instructor.

Viewers explore every run, page and link, type their own sentences and download reports. They cannot start,
cancel, delete, upload, compress, measure or clear the cache. The pages hide those controls from them (`may_change`)
*and* every action checks again where it is performed (`refused`), so a request crafted by a viewer gets nothing.
The token is compared in constant time and never written to a log, the page or the address bar.
"""
from __future__ import annotations

import hashlib
import hmac
import os

import streamlit as st

TOKEN_ENV = "ADS_INSTRUCTOR_TOKEN"
TOKEN_PARAM = "token"                       # a link that makes its visitor the instructor, once
INSTRUCTOR = "roles.instructor"             # session state: this tab's visitor entered the token
TOKEN_BOX = "roles.token_box"               # the sidebar's token field (emptied as soon as it is read)
TOKEN_MSG = "roles.token_msg"               # what the last try said
LOCAL_ADDRESSES = frozenset({"127.0.0.1", "localhost", "::1"})
ALONE, CLASS, VIEWERS_ONLY = "alone", "class", "viewers only"
SERVE_COMMAND = "ADS_INSTRUCTOR_TOKEN=<a secret> make serve"


def configured_token() -> str | None:
    token = os.environ.get(TOKEN_ENV, "").strip()
    return token or None


def exposed(address: str | None = None) -> bool:
    """Whether the server is reachable from other machines: any address but the loopback's. An unset address is
    exposed too, since Streamlit then listens on every interface."""
    address = st.get_option("server.address") if address is None else address
    return not address or str(address).strip("[]") not in LOCAL_ADDRESSES


def mode() -> str:
    if configured_token():
        return CLASS
    return VIEWERS_ONLY if exposed() else ALONE


def token_matches(given: str | None) -> bool:
    """The given token against the configured one, in constant time (digests of equal length compared)."""
    token = configured_token()
    if not token or not given:
        return False
    return hmac.compare_digest(hashlib.sha256(given.strip().encode()).digest(),
                               hashlib.sha256(token.encode()).digest())


def may_change() -> bool:
    """Whether this tab's visitor may start, cancel, delete, upload, compress or measure."""
    m = mode()
    return m == ALONE or (m == CLASS and st.session_state.get(INSTRUCTOR) is True)


def refused(action: str) -> bool:
    """True (and an error on the page) when this visitor may not `action`: the check every action makes where it
    is performed, whatever the page showed."""
    if may_change():
        return False
    st.error(f"Only the instructor can {action}. {how_to_instruct()}", icon=":material/lock:")
    return True


def how_to_instruct() -> str:
    if mode() == CLASS:
        return "The instructor enters the instructor token in the sidebar."
    return (f"This studio is served on the network without an instructor token, so every visitor is a viewer; to "
            f"change things, restart it with `{SERVE_COMMAND}`.")


def _check_box() -> None:
    given = st.session_state.get(TOKEN_BOX, "")
    st.session_state[TOKEN_BOX] = ""                    # never kept, never drawn again
    if token_matches(given):
        st.session_state[INSTRUCTOR] = True
        st.session_state[TOKEN_MSG] = ("success", "You are the instructor in this tab: every control is yours.")
    elif given:
        st.session_state[TOKEN_MSG] = ("error", "That is not the instructor token.")


def _leave() -> None:
    st.session_state[INSTRUCTOR] = False
    st.session_state[TOKEN_MSG] = ("info", "You are a viewer in this tab now.")


def read_link_token() -> None:
    """A link's `token=` parameter: checked once and taken out of the address, so it is neither kept in the
    browser's address bar nor passed on by a copied link."""
    if TOKEN_PARAM not in st.query_params:
        return
    given = st.query_params[TOKEN_PARAM]
    del st.query_params[TOKEN_PARAM]
    if mode() != CLASS:             # no token to match: alone, every control is there; viewers only, none is
        return
    if token_matches(given):
        st.session_state[INSTRUCTOR] = True
        st.session_state[TOKEN_MSG] = ("success", "You are the instructor in this tab: every control is yours.")
    else:
        st.session_state[TOKEN_MSG] = ("error", "The link's instructor token is not right; you are a viewer.")


def sidebar() -> None:
    """The visitor's role and how to change it; nothing at all for one user alone."""
    m = mode()
    if m == ALONE:
        return
    if msg := st.session_state.pop(TOKEN_MSG, None):
        getattr(st, msg[0])(msg[1])
    if may_change():
        st.caption(":material/school: **Instructor**: you can start, cancel, delete and measure.")
        st.button("Leave instructor mode", key="roles.leave", on_click=_leave, icon=":material/logout:")
    elif m == CLASS:
        st.caption(":material/visibility: **Viewer**: explore every run and page; the instructor starts sessions.")
        st.text_input("Instructor token", type="password", key=TOKEN_BOX, on_change=_check_box,
                      help="The token the studio was started with (ADS_INSTRUCTOR_TOKEN). It is checked and "
                           "forgotten; this tab stays the instructor's until it is closed or you leave the mode.")
    else:
        st.caption(":material/visibility: **Viewer**: " + how_to_instruct())
