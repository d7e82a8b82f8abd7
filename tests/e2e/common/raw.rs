//! A Postgres connection that speaks raw protocol messages, for tests that must control
//! exactly which messages travel together: a pipeline of Executes before one Sync, which no
//! driver API here sends as such.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::USER;

/// What the server answered, one entry per message that matters here.
#[derive(Debug, PartialEq)]
pub enum Reply {
    /// `CommandComplete` with its tag.
    Complete(String),
    /// `ErrorResponse` with its SQLSTATE.
    Error(String),
    /// `DataRow`, every value as text.
    Row(Vec<Option<String>>),
    /// `ReadyForQuery` with the transaction status.
    Ready(char),
}

/// A Postgres connection speaking raw protocol messages.
pub struct Raw {
    stream: TcpStream,
    out: Vec<u8>,
}

impl Raw {
    /// A session of the test login, which the server must let in without a password
    /// (`PGWIRE_INSECURE_NO_PASSWORD`).
    pub async fn connect(port: u16) -> std::io::Result<Raw> {
        let stream = TcpStream::connect(("127.0.0.1", port)).await?;
        let mut raw = Raw {
            stream,
            out: Vec::new(),
        };
        let mut body = 196_608_i32.to_be_bytes().to_vec();
        for part in ["user", USER, "database", "postgres"] {
            body.extend(part.as_bytes());
            body.push(0);
        }
        body.push(0);
        raw.out.extend(((body.len() + 4) as i32).to_be_bytes());
        raw.out.extend(body);
        let replies = raw.round_trip().await?;
        assert_eq!(replies.last(), Some(&Reply::Ready('I')), "{replies:?}");
        Ok(raw)
    }

    fn message(&mut self, kind: u8, body: &[u8]) {
        self.out.push(kind);
        self.out.extend(((body.len() + 4) as i32).to_be_bytes());
        self.out.extend(body);
    }

    /// `Parse` of `sql` as statement `name`, its parameter types left to the server.
    pub fn parse(&mut self, name: &str, sql: &str) {
        let mut body = Vec::new();
        for text in [name, sql] {
            body.extend(text.as_bytes());
            body.push(0);
        }
        body.extend(0_i16.to_be_bytes());
        self.message(b'P', &body);
    }

    /// `Bind` of statement `name` to the unnamed portal with text `values`, then `Execute`.
    pub fn execute(&mut self, name: &str, values: &[Option<&str>]) {
        let mut body = vec![0];
        body.extend(name.as_bytes());
        body.push(0);
        body.extend(0_i16.to_be_bytes());
        body.extend((values.len() as i16).to_be_bytes());
        for value in values {
            match value {
                Some(v) => {
                    body.extend((v.len() as i32).to_be_bytes());
                    body.extend(v.as_bytes());
                }
                None => body.extend((-1_i32).to_be_bytes()),
            }
        }
        body.extend(0_i16.to_be_bytes());
        self.message(b'B', &body);
        let mut execute = vec![0];
        execute.extend(0_i32.to_be_bytes());
        self.message(b'E', &execute);
    }

    pub fn sync(&mut self) {
        self.message(b'S', &[]);
    }

    /// `Flush`: the server sends what it holds.
    pub fn flush(&mut self) {
        self.message(b'H', &[]);
    }

    /// Sends what was queued, in one write, without reading.
    pub async fn send(&mut self) -> std::io::Result<()> {
        let out = std::mem::take(&mut self.out);
        self.stream.write_all(&out).await
    }

    /// How many bytes arrive until none has for `quiet`.
    pub async fn arrived_within(&mut self, quiet: std::time::Duration) -> std::io::Result<usize> {
        let mut total = 0;
        let mut buf = vec![0; 64 << 10];
        while let Ok(read) = tokio::time::timeout(quiet, self.stream.read(&mut buf)).await {
            match read? {
                0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                n => total += n,
            }
        }
        Ok(total)
    }

    /// Sends what was queued; returns how many bytes the first `read` of the answer got and
    /// how many there were up to and with `ReadyForQuery`.
    pub async fn first_read(&mut self) -> std::io::Result<(usize, usize)> {
        let out = std::mem::take(&mut self.out);
        self.stream.write_all(&out).await?;
        let mut answer = Vec::new();
        let mut first = None;
        let mut buf = vec![0; 64 << 10];
        // The answer ends with `ReadyForQuery`: 'Z', length 5, the status byte.
        while !(answer.len() >= 6 && answer[answer.len() - 6..answer.len() - 1] == *b"Z\0\0\0\x05")
        {
            let n = self.stream.read(&mut buf).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            first.get_or_insert(n);
            answer.extend_from_slice(&buf[..n]);
        }
        Ok((first.unwrap_or_default(), answer.len()))
    }

    /// Sends what was queued and reads the answers up to `ReadyForQuery`.
    pub async fn round_trip(&mut self) -> std::io::Result<Vec<Reply>> {
        let out = std::mem::take(&mut self.out);
        self.stream.write_all(&out).await?;
        let mut replies = Vec::new();
        loop {
            let kind = self.stream.read_u8().await?;
            let len = self.stream.read_i32().await?;
            let mut body = vec![0; usize::try_from(len).unwrap_or(4).saturating_sub(4)];
            self.stream.read_exact(&mut body).await?;
            match kind {
                b'C' => replies.push(Reply::Complete(cstring(&body))),
                b'E' => {
                    let code = body
                        .split(|b| *b == 0)
                        .find_map(|f| f.strip_prefix(b"C"))
                        .map(|c| String::from_utf8_lossy(c).into_owned())
                        .unwrap_or_default();
                    replies.push(Reply::Error(code));
                }
                b'D' => {
                    let count = i16::from_be_bytes([body[0], body[1]]) as usize;
                    let mut at = 2;
                    let mut row = Vec::with_capacity(count);
                    for _ in 0..count {
                        let len = i32::from_be_bytes(body[at..at + 4].try_into().expect("len"));
                        at += 4;
                        if len < 0 {
                            row.push(None);
                        } else {
                            let end = at + len as usize;
                            row.push(Some(String::from_utf8_lossy(&body[at..end]).into_owned()));
                            at = end;
                        }
                    }
                    replies.push(Reply::Row(row));
                }
                b'Z' => {
                    replies.push(Reply::Ready(body[0] as char));
                    return Ok(replies);
                }
                _ => {}
            }
        }
    }
}

fn cstring(body: &[u8]) -> String {
    String::from_utf8_lossy(body.split(|b| *b == 0).next().unwrap_or_default()).into_owned()
}
