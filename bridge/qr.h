/*
 * bridge/qr.h - a QR code as a PNG image (libqrencode + libpng), for the login QR the bot posts.
 */
#ifndef BR_QR_H
#define BR_QR_H

#include "util/bytes.h"

/* Appends a PNG of text's QR code (error correction L, `scale` pixels per module, a 4-module
 * quiet zone) to out. 0, or -1 when the text cannot be encoded or memory runs out. */
int br_qr_png(const char *text, int scale, wb_buf *out);

#endif
