// A Node consumer written against the declarations tidings generates (`events.d.ts`, copied
// beside this file by tests/tests/contracts_node.rs), type-checked with `tsc --noEmit`.
import type { OrdersMessage, OrderPlaced, Payment } from './events';

function paidWith(payment: Payment): string {
  switch (payment.kind) {
    case 'card':
      return `card ending ${payment.last4}`;
    case 'invoice':
      return `invoice due in ${payment.days} days`;
  }
}

export function describe(message: OrdersMessage): string {
  switch (message.type) {
    case 'order.placed': {
      const order: OrderPlaced = message.data;
      const coupon = order.coupon ?? 'no coupon';
      const first = order.lines[0];
      return `order ${order.orderId} by ${order.customer.displayName} (${order.channel}): ` +
        `${first.quantity} x ${first.sku}, ${order.total}, ${coupon}, ${paidWith(order.payment)}`;
    }
    case 'order.shipped':
      return `order ${message.data.order_id} shipped with ${message.data.carrier ?? 'no carrier'}`;
  }
}
